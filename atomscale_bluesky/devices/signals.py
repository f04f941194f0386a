"""Signal behaviour the camera and the sensors share: monitor reads and data-key descriptions."""

from __future__ import annotations

import threading
from typing import Any


def strip_ctrl_limits(desc: dict[str, Any]) -> None:
    """Drop ``lower_ctrl_limit``/``upper_ctrl_limit`` from a data-key description, in place."""
    for key in ("lower_ctrl_limit", "upper_ctrl_limit"):
        desc.pop(key, None)


class CallbackConsistentRead:
    """``read()`` inside a value callback returns the update that fired it, never a newer one.

    bluesky's monitor callback ignores the value it is given and calls ``read()``; with the
    pyepics layer the cached value may already belong to the next update (a frame counter then
    shows repeats and gaps). Inside the callback this mixin answers with the firing update.
    """

    SUB_VALUE: str
    name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._firing = threading.local()
        super().__init__(*args, **kwargs)

    def _run_subs(self, *args: Any, sub_type: Any, **kwargs: Any) -> None:
        if sub_type != self.SUB_VALUE or "value" not in kwargs:
            super()._run_subs(*args, sub_type=sub_type, **kwargs)  # type: ignore[misc]
            return
        previous = getattr(self._firing, "reading", None)
        self._firing.reading = (kwargs["value"], kwargs.get("timestamp"))
        try:
            super()._run_subs(*args, sub_type=sub_type, **kwargs)  # type: ignore[misc]
        finally:
            self._firing.reading = previous

    def postprocess(self, value: Any) -> Any:
        """Turn a raw CA value into what ``get()`` returns (identity here)."""
        return value

    def read(self) -> dict[str, dict[str, Any]]:
        firing = getattr(self._firing, "reading", None)
        if firing is None or firing[1] is None:
            return super().read()  # type: ignore[misc,no-any-return]
        value, timestamp = firing
        return {self.name: {"value": self.postprocess(value), "timestamp": timestamp}}
