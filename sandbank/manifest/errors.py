"""Errors of building a workspace from a manifest (``create_sandbox``).

SandbankError
├── ConfigurationError
│   └── SourceError      a host path, URL or git source cannot be read (names the field)
└── SetupFailed          a setup command failed (command, exit code, output)
"""

from __future__ import annotations

from sandbank._result import ExecResult
from sandbank.errors import ConfigurationError, SandbankError

__all__ = ["SetupFailed", "SourceError"]


class SourceError(ConfigurationError):
    """A content source of the manifest cannot be read; the message names the field."""

    def __init__(self, where: str, detail: str, *, retryable: bool = False) -> None:
        super().__init__(f"{where}: {detail}", retryable=retryable)
        self.where = where


class SetupFailed(SandbankError):
    """A setup command exited non-zero or timed out; the half-made sandbox was destroyed."""

    def __init__(
        self, index: int, command: str | list[str], reason: str, result: ExecResult, output: str
    ) -> None:
        tail = output[-4000:] or "(no output)"
        super().__init__(
            f"setup[{index}] {command!r} {reason}; "
            f"its output:\n{tail}\nfix the command (or what it needs) and create again; "
            f"the sandbox was destroyed"
        )
        self.index = index
        self.command = command
        self.exit_code = result.exit_code
        self.result = result
        self.output = output
