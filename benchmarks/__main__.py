"""Run every benchmark (``make bench``) or the ones named: ``python -m benchmarks client ioc``.

Options after the names go to each named benchmark: ``python -m benchmarks soak --minutes 1``.
Long benchmarks (``soak``) run only when named.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ONLY_WHEN_NAMED = {"bench_soak"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    split = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, options = args[:split], [a for a in args[split:] if a != "--"]
    here = Path(__file__).parent
    found = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if not names:
        found = [n for n in found if n not in ONLY_WHEN_NAMED]
    chosen = [n for n in found if not names or n.removeprefix("bench_") in names or n in names]
    if not chosen:
        print(
            f"no benchmark matches {names}; available: {[n.removeprefix('bench_') for n in found]}"
        )
        return 2
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main(list(options))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
