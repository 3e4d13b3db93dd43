"""Secrets by reference: a manifest names where a value lives, the worker reads it per exec.

A reference is ``env:HOST_VAR``, ``file:/path`` or an fsspec URL (``s3://bucket/key``).
Only the reference travels (workflow history, state files, labels); ``resolve_secrets``
reads the values at the moment a command starts, and ``Redactor`` replaces each value in
the output with ``[secret NAME]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from sandbank._result import ExecResult
from sandbank.errors import SecretUnavailable

__all__ = ["MAX_SECRET_BYTES", "Redactor", "check_reference", "exec_environment", "resolve_secrets"]

MAX_SECRET_BYTES = 64 * 1024
"""The largest value a secret may have (it travels in a command's environment)."""

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://.+")


def check_reference(reference: str) -> str:
    """``reference`` if it is ``env:VAR``, ``file:/abs/path`` (or ``~/path``) or ``scheme://...``.

    Raises ``ValueError`` saying what is wrong, for the manifest's validation.
    """
    kind, _, rest = reference.partition(":")
    if "\x00" in reference:
        raise ValueError("contains a NUL byte")
    if kind == "env" and not rest.startswith("//"):
        if not _ENV_VAR.match(rest):
            raise ValueError(f"{reference!r} must name a variable after 'env:'")
    elif kind == "file" and not rest.startswith("//"):
        if not (rest.startswith("/") or rest.startswith("~")):
            raise ValueError(f"{reference!r} must give an absolute path after 'file:'")
    elif not _URL.match(reference):
        # Not echoed: it may be the value itself, put there by mistake.
        raise ValueError(
            "is not a secret reference; write 'env:HOST_VAR', 'file:/path' or a URL such as "
            "'s3://bucket/key' (the value itself never goes in a manifest)"
        )
    return reference


def resolve_secrets(secrets: Mapping[str, str]) -> dict[str, str]:
    """The value of each secret, read now from its reference, in this process.

    A file's (or object's) content loses one trailing newline. Raises ``SecretUnavailable``
    naming the secret and its reference (never a value) when one cannot be read.
    """
    return {name: _resolve(name, reference) for name, reference in secrets.items()}


def exec_environment(
    env: Mapping[str, str], secrets: Mapping[str, str], call_env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], Redactor]:
    """The environment of one command and the redactor of the secrets in it.

    The manifest's ``env``, then its ``secrets`` resolved now, then ``call_env`` on top; a
    secret that ``call_env`` replaces is not read at all.
    """
    wanted = {n: r for n, r in secrets.items() if not call_env or n not in call_env}
    values = resolve_secrets(wanted)
    return {**env, **values, **(call_env or {})}, Redactor(values)


def _resolve(name: str, reference: str) -> str:
    kind, _, rest = reference.partition(":")
    if kind == "env" and not rest.startswith("//"):
        value = os.environ.get(rest)
        if value is None:
            raise SecretUnavailable(
                name, reference, f"the variable {rest} is not set in the worker's environment"
            )
        return _checked(name, reference, value.encode())
    try:
        if kind == "file" and not rest.startswith("//"):
            with Path(rest).expanduser().open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 1)
        else:
            data = _read_url(reference)
    except ImportError:
        raise SecretUnavailable(
            name, reference, "a URL needs fsspec: pip install 'sandbank[snapshots]'"
        ) from None
    except Exception as exc:  # any fsspec backend's error: name it, never echo content
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretUnavailable(name, reference, f"it cannot be read ({reason})") from None
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    return _checked(name, reference, data)


def _read_url(reference: str) -> bytes:
    import fsspec

    with fsspec.open(reference, "rb") as handle:
        data: bytes = handle.read(MAX_SECRET_BYTES + 1)
    return data


def _checked(name: str, reference: str, data: bytes) -> str:
    if len(data) > MAX_SECRET_BYTES:
        raise SecretUnavailable(name, reference, f"it is larger than {MAX_SECRET_BYTES} bytes")
    if b"\x00" in data:
        raise SecretUnavailable(name, reference, "it contains a NUL byte")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SecretUnavailable(name, reference, "it is not UTF-8 text") from None


class Redactor:
    """Replaces each secret's value in command output with ``[secret NAME]``.

    ``redact`` works on a whole buffer; ``stream`` returns a ``StreamRedactor`` for output
    that arrives in chunks, where a value may be split across two of them.
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        by_value: dict[bytes, bytes] = {}
        for name in sorted(values):
            if values[name]:
                by_value.setdefault(values[name].encode(), f"[secret {name}]".encode())
        self._names = by_value
        longest_first = sorted(by_value, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(v) for v in longest_first) or b"(?!)")
        self._longest = max(map(len, by_value), default=0)

    def __bool__(self) -> bool:
        return bool(self._names)

    def redact(self, data: bytes, *, cut: bool = False) -> bytes:
        """``data`` with every value replaced; ``cut``: it was truncated, so a trailing
        piece that may be the start of a value is dropped too."""
        if not self._names:
            return data
        if cut:
            data = data[: self._safe_end(data)]
        return self._pattern.sub(lambda m: self._names[m.group()], data)

    def redact_result(self, result: ExecResult) -> ExecResult:
        """``result`` with stdout and stderr redacted."""
        if not self._names:
            return result
        return replace(
            result,
            stdout=self.redact(result.stdout, cut=result.truncated),
            stderr=self.redact(result.stderr, cut=result.truncated),
        )

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def _safe_end(self, data: bytes) -> int:
        """Where the longest suffix of ``data`` that could start a value begins."""
        for start in range(max(0, len(data) - self._longest + 1), len(data)):
            tail = data[start:]
            if any(value.startswith(tail) for value in self._names):
                # A complete value across ``start`` must not be split either.
                for match in self._pattern.finditer(data, max(0, start - self._longest)):
                    if match.start() < start < match.end():
                        return match.start()
                return start
        return len(data)


class StreamRedactor:
    """Redacts one output stream chunk by chunk, holding back a possible partial value."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The redacted output that can be passed on now (maybe empty)."""
        data = self._pending + chunk
        end = self._redactor._safe_end(data)
        self._pending = data[end:]
        return self._redactor.redact(data[:end])

    def flush(self) -> bytes:
        """What was held back, redacted: call it once the stream ended."""
        data, self._pending = self._pending, b""
        return self._redactor.redact(data)
