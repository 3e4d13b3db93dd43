"""sandbank._children: children die with the process (not with the thread that started them),
and SIGTERM and SIGHUP act like Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from sandbank._children import spawn, stop_signals_interrupt
from tests.processes import REPO, alive, assert_gone


def test_a_child_outlives_the_thread_that_spawned_it() -> None:
    children: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: children.append(spawn(["sleep", "60"])))
    thread.start()
    thread.join()
    try:
        time.sleep(0.5)
        assert alive(children[0].pid)
    finally:
        children[0].kill()
        children[0].wait()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_a_child_dies_with_its_process(sig: signal.Signals) -> None:
    script = (
        "import sys, time; from sandbank._children import spawn; "
        "print(spawn(['sleep', '60']).pid, flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.send_signal(sig)
        parent.wait(10)
        assert_gone([child], timeout=5)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_stop_signals_raise_keyboard_interrupt(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt), stop_signals_interrupt():
        os.kill(os.getpid(), sig)
        time.sleep(5)
    assert signal.getsignal(sig) == before
