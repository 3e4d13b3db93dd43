"""``ExecResult``, the outcome of a command, in a module that imports nothing of sandbank's.

``sandbank.errors`` needs it (``ExecTimeout.result``) and ``sandbank.providers.base``
re-exports it; keeping it here leaves no import circle between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExecResult"]


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a finished command. Output beyond the capture limit sets ``truncated``."""

    exit_code: int
    """The command's exit status; 128 + N when signal N killed it, 127 for a missing program."""
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    """Seconds from start to exit."""
    truncated: bool = False
    """Output went beyond the capture limit; the rest reached only ``on_output``."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")
