"""A ``sandbank worker`` in a process of its own, for the demo and the benchmark.

It runs in its own process group, so ``kill()`` is a real crash (SIGKILL) and ``stop()``
leaves nothing behind; it dies with the process that started it, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sandbank._children import spawn

__all__ = ["WorkerProcess"]

_READY_LINE = "worker on task queue"


class WorkerProcess:
    """``python -m sandbank worker`` with its output in ``log_dir/NAME.log``."""

    def __init__(
        self,
        name: str,
        *,
        address: str,
        task_queue: str,
        store: str,
        state_dir: Path,
        log_dir: Path,
        extra: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        argv = [
            sys.executable, "-m", "sandbank", "worker", "--address", address,
            "--task-queue", task_queue, "--store", store, "--state-dir", str(state_dir),
            "--identity", name, *extra,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = spawn(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    async def ready(self, timeout: float = 90.0) -> None:
        """Wait until the worker polls its task queue; raise with its log if it died."""
        deadline = time.monotonic() + timeout
        while _READY_LINE not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {self.name} did not start:\n{tail}")
            await asyncio.sleep(0.05)

    def rss_mb(self) -> float:
        """Resident memory of the worker process, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        """A crash: SIGKILL the worker process itself."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL the whole group. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
