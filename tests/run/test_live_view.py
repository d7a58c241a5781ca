"""The live view of ``hpo launch`` as a person sees it: the real command on a pseudo-terminal,
its screen read back frame by frame."""

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

import pytest

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_terminal(args: list[str], *, cwd: Path, timeout: float = 240) -> tuple[int, str]:
    """Run ``hpo ARGS`` with a 140x40 pseudo-terminal as its stdin, stdout and stderr; return
    its exit code and everything it drew, escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    process = subprocess.Popen([sys.executable, "-m", "hpo", *args], stdin=slave, stdout=slave,
                               stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: every process on it has exited
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        else:
            pytest.fail(f"hpo {' '.join(args)} was still running after {timeout} s")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)
    text = ANSI.sub("", drawn.decode("utf-8", errors="replace"))
    # The terminal ends lines with CR LF, and a redraw starts with a CR after moving up.
    return process.returncode, text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.slow
def test_the_live_view_labels_the_baseline_estimates_and_lists_recent_trials(
        tmp_path: Path, mnist_dir: Path) -> None:
    code, screen = run_on_a_terminal(
        ["launch", "mnist-mlp", "--trials", "3", "--epochs", "2", "--workers", "1",
         "--storage", f"sqlite:///{tmp_path / 'hpo.db'}", "--data-dir", str(mnist_dir)],
        cwd=tmp_path)
    (tmp_path / "live-view.txt").write_text(screen)  # the whole capture, to read on failure
    assert code == 0, screen[-2000:]
    # How to watch it in the dashboard, before the panel: while there is something to watch.
    assert screen.index("Watch it live: hpo dashboard --storage sqlite:///") < \
        screen.index("mnist-mlp · sqlite")
    # Every refresh redraws the panel from its header: the study, the storage, the time.
    frames = [f"mnist-mlp · sqlite{rest}" for rest in screen.split("mnist-mlp · sqlite")[1:]]
    assert len(frames) > 3, screen[-2000:]
    while_baseline = [f for f in frames if re.search(r"#0 \(baseline\)\s+\d/2", f)]
    assert while_baseline, "no frame labels trial 0 as the baseline"
    assert all("left" not in f.splitlines()[0] for f in while_baseline
               if "0/3 trials done" in f)  # no estimate before a trial has ended
    estimated = [f for f in frames if re.search(r"· about \d+ (s|min) left\n", f)]
    assert estimated, "no frame gives the time left"
    assert "trial 0 complete 0." in estimated[0]  # the first trial's end, under the workers
    last = frames[-1]
    (tmp_path / "live-view-last-frame.txt").write_text(last)
    assert "3/3 trials done" in last
    ended = re.findall(r"^trial (\d) (complete|pruned)", last, flags=re.MULTILINE)
    assert [number for number, _ in ended] == ["0", "1", "2"], last
    # Then the summary, with the next commands ready to paste.
    assert "Then: hpo evaluate mnist-mlp --storage sqlite:///" in screen
