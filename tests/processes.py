"""For tests that run a command as a real process, stop it by a signal and look for leftovers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sandbank.testing.services import port_free

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no port and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_gone(pids: Iterable[int], ports: Iterable[int] = (), timeout: float = 10.0) -> None:
    """Every process in ``pids`` ends and every port in ``ports`` is free within ``timeout``."""
    pids, ports = list(pids), list(ports)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        busy = [p for p in ports if not port_free(p)]
        if not left and not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: pids {left}; ports still taken: {busy}")
        time.sleep(0.1)


def wait_for(
    log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float
) -> re.Match[str]:
    """The first match of ``pattern`` in the growing ``log`` of ``proc``."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} (exit {proc.returncode}) in:\n{text[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def sandbank_process(*args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m sandbank ARGS`` with its output in ``log``; SIGKILLed afterwards if alive."""
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbank", *args], cwd=REPO, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def kill_leftovers(pids: Iterable[int]) -> None:
    """SIGKILL what a failed test left running (no-op for the pids that are gone)."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
