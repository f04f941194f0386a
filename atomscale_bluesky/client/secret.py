"""``ApiKey``: the Atomscale API key as an object that never shows itself.

The key is held as an ``ApiKey`` everywhere (client, callback, commands); only ``reveal()`` gives
the text, and the one caller is the code that sets the ``X-API-KEY`` header. Every other way of
turning it into text (repr, str, format, logging, pickling, copying into another process) shows
or carries nothing of it.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

__all__ = ["MASKED", "ApiKey"]

#: How a key looks wherever it is printed or logged.
MASKED = "ApiKey('***')"


class ApiKey:
    """An API key: masked in every text form, refused by pickle, compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"an API key is a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that needs it: the X-API-KEY header."""
        return self._value

    def __repr__(self) -> str:
        return MASKED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASKED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiKey):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(ApiKey)  # equal keys hash alike; the hash says nothing about the value

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "an API key is not picklable: give the other process ATOMSCALE_API_KEY or "
            "ATOMSCALE_API_KEY_FILE instead"
        )

    def __copy__(self) -> ApiKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ApiKey:
        return self
