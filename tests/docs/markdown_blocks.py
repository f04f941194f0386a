"""The code blocks of the README and the docs pages, with the reason a block is not run.

A fenced block (at any indentation) is code when its language is Python or a shell; a block is
left out of the run only when an HTML comment ``<!-- not run: reason -->`` stands just before its
fence (blank lines between are fine), so the reason is visible to whoever edits the page.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
PYTHON = ("python", "py", "python3", "ipython")
SHELL = ("bash", "sh", "shell", "console")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$", re.S)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str  # "python" or "shell"
    code: str
    not_run: str | None  # the marker's reason, None when the block runs

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every docs/*.md page (new pages are picked up by themselves)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The Python and shell blocks of ``page``, in order."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip().lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        language = info.split()[0] if info else ""
        kind = "python" if language in PYTHON else "shell" if language in SHELL else None
        if language == "console":  # a session transcript: its ``$ `` lines are the commands
            body = [line[2:] for line in body if line.startswith("$ ")]
        if kind is not None:
            found.append(
                Block(
                    page=str(page.relative_to(ROOT)),
                    line=i + 1,
                    language=kind,
                    code=textwrap.dedent("\n".join(body)) + "\n",
                    not_run=_marker_before(lines, i),
                )
            )
        i = j + 1
    return found


def _marker_before(lines: list[str], fence_index: int) -> str | None:
    """The reason of a ``<!-- not run: ... -->`` comment just before the fence, else None."""
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0 or not lines[k].rstrip().endswith("-->"):
        return None
    start = k
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    comment = " ".join(line.strip() for line in lines[start : k + 1])
    match = _NOT_RUN.search(comment)
    return match["reason"] if match else None
