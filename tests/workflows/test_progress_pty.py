"""The live progress line in a real terminal: a pseudo-terminal runs an interactive session.

``python -i`` on a pty is an interactive session on a terminal, so the callback's defaults show
the tqdm line and print the run's summary. The line must be redrawn in place (carriage returns,
no new lines) with its fields counting up, and the summary printed after it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

SESSION = Path(__file__).with_name("progress_session.py")


def read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """Everything the terminal shows until ``marker`` (bounded by ``timeout``)."""
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


def test_progress_line_updates_in_place_then_the_summary_is_printed():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # 40x200 chars
    env = {**os.environ, "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-i", str(SESSION)],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    try:
        shown = read_until(master, b"SESSION-END", timeout=300)
        os.write(master, b"exit()\n")
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    text = shown.decode(errors="replace")
    assert "SESSION-DONE 4" in text, text[-3000:]
    before_summary = text.split("Atomscale run ")[0]
    renders = re.findall(r"\ratomscale: ([^\r\n]*)", before_summary)
    lines = [r for r in renders if "spooled" in r]
    points = [int(m.group(1)) for r in lines if (m := re.search(r"(\d+) points? spooled", r))]
    assert points and points == sorted(points) and {1, 2, 3, 4} <= set(points), lines
    assert all("chunks" in r and "pending" in r and "upload lag" in r for r in lines), lines
    # in place: no new line between the first and the last render of the line
    first, last = before_summary.index("\ratomscale: "), before_summary.rindex("\ratomscale: ")
    assert "\n" not in before_summary[first:last]
    summary = text.split("Atomscale run ")[1]
    assert re.match(r"[0-9a-f]{8} .*COMPLETE", summary)
    assert "\ratomscale: " not in summary  # the line was taken away for the summary
    assert "see them on the local server: http://127.0.0.1:" in text
