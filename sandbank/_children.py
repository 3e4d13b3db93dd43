"""Child processes that never outlive sandbank, and stop signals that act like Ctrl-C.

``spawn`` starts a child that dies with this process even after a SIGKILL, and
``ManagedProcess`` runs a service (a Temporal dev server, an object-store emulator) that way;
``stop_signals_interrupt`` makes SIGTERM and SIGHUP stop a command as cleanly as Ctrl-C.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

__all__ = ["STOP_SIGNALS", "ManagedProcess", "spawn", "stop_signals_interrupt"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a terminal, a closed terminal or a service manager sends to stop a command."""

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that SIGKILLs the child when the thread that started it ends
    (Linux; None elsewhere). A parent that died before the child armed it kills it at once."""
    if _prctl is None:
        return None
    prctl, parent = _prctl, os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: keep it tiny
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


_spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sandbank-spawn")
"""One thread that lives as long as this process: the kernel's parent-death signal follows
the thread that forked, so children forked here die with the process, not with a thread."""


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` of a child that is SIGKILLed when this process
    dies, even by SIGKILL (Linux; elsewhere a plain Popen)."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, preexec_fn=_die_with_parent(), **popen)

    return _spawner.submit(start).result()


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM and SIGHUP do what SIGINT does: under ``asyncio.run`` the
    main task is cancelled (its ``finally`` blocks run), then ``KeyboardInterrupt``."""

    def as_interrupt(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, as_interrupt) for sig in STOP_SIGNALS[1:]}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ManagedProcess:
    """One service process in its own session (process group), logging to a file; it dies
    with this process, even after a SIGKILL of this process."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        term_grace: float = 10.0,
        cleanup: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.term_grace = term_grace
        self.cleanup = list(cleanup)
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped = False

    def start(self) -> None:
        """Launch the process; stdout and stderr go to :attr:`log_path` (appended)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n=== start: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.popen = spawn(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
        )
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (for error messages)."""
        try:
            data = self.log_path.read_bytes()[-64 * 1024 :]
        except OSError:
            return "(no log)"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def _signal_group(self, sig: int) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group now: a crash, not a shutdown."""
        self.stop(grace=0)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL. Idempotent."""
        popen = self.popen
        if popen is None or self._stopped:
            return
        grace = self.term_grace if grace is None else grace
        if popen.poll() is None:
            self._signal_group(signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait(timeout=30)
        # Children left behind in the group (the leader is gone, the group id is still theirs).
        # Only once, right after reaping: later the id could belong to someone else.
        self._signal_group(signal.SIGKILL)
        self._stopped = True
        for path in self.cleanup:
            with contextlib.suppress(OSError):
                path.unlink()
        if self._log is not None:
            self._log.close()
            self._log = None
