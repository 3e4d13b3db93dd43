"""What a manifest puts into a workspace: files, directories, setup commands, excludes.

Only references travel in a manifest (a host path, a URL, a git commit); inline text and
base64 are the exception and are capped, so a manifest stays small enough for workflow
history. ``sandbank.manifest.materialize`` reads the sources on the worker.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from collections.abc import Sequence
from contextvars import ContextVar
from functools import partial
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "INLINE_LIMIT",
    "GitSource",
    "SetupCommand",
    "WorkspaceDir",
    "WorkspaceFile",
    "applying_contents",
    "check_contents",
    "check_excludes",
]

INLINE_LIMIT = 1024 * 1024
"""Bytes of inline content (text and base64, decoded) a manifest may hold in all; bigger
content belongs in a host path or a URL, read on the worker."""

APPLYING: ContextVar[bool] = ContextVar("sandbank_applying_contents", default=False)
"""Set by ``create_sandbox`` around ``Provider.create``, which refuses contents otherwise."""


def applying_contents() -> bool:
    """Whether ``Provider.create`` runs for ``create_sandbox`` (which applies the contents)."""
    return APPLYING.get()


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _target(value: str, *, root_ok: bool) -> str:
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty path without NUL bytes")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError(f"{value!r} is absolute; give a path relative to the workspace root")
    if ".." in path.parts:
        raise ValueError(f"{value!r} leaves the workspace ('..'); keep the path inside it")
    text = str(path)
    if text == "." and not root_ok:
        raise ValueError("is the workspace root; name a file inside it")
    return text


def _mode(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not re.fullmatch(r"[0-7]{1,4}", text):
            raise ValueError(f"{value!r} is not a permission mode; write e.g. '0755' or 493")
        value = int(text, 8)
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 0o7777:
        raise ValueError(f"{value:o} is not a permission mode (0 to 7777 octal)")
    return value


def _host(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError(f"{value!r} is relative; host paths are absolute (read on the worker)")
    return value


def _url(value: str | None) -> str | None:
    if value is not None and not _SCHEME.match(value):
        raise ValueError(f"{value!r} is not a URL; write e.g. 's3://bucket/key' or 'https://...'")
    return value


Mode = Annotated[int | None, BeforeValidator(_mode)]
HostPath = Annotated[str | None, AfterValidator(_host)]
Url = Annotated[str | None, AfterValidator(_url)]


class GitSource(_Model):
    """A git repository cloned on the worker: ``ref`` is a branch, a tag or a full commit id
    (default: the remote's HEAD); ``depth`` commits of history (0: all of it)."""

    url: str
    ref: str | None = None
    depth: int = Field(default=1, ge=0)

    @field_validator("url", "ref")
    @classmethod
    def _no_options(cls, value: str | None) -> str | None:
        if value is not None and (not value or value.startswith("-") or value != value.strip()):
            raise ValueError(f"{value!r} is not a git URL or ref")
        return value


class WorkspaceFile(_Model):
    """One file: exactly one of ``text``, ``base64``, ``host`` (a host file) or ``url``.

    ``mode`` defaults to 0o644, or to the host file's own mode.
    """

    path: Annotated[str, AfterValidator(partial(_target, root_ok=False))]
    mode: Mode = None
    text: str | None = None
    base64: str | None = None
    host: HostPath = None
    url: Url = None

    @field_validator("base64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"is not valid base64 ({exc})") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> WorkspaceFile:
        given = [k for k in ("text", "base64", "host", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            got = " and ".join(given) or "none"
            raise ValueError(f"give exactly one of text, base64, host, url (got {got})")
        return self

    @property
    def inline(self) -> bytes | None:
        """The content held in the manifest itself, or ``None`` for a host path or URL."""
        if self.text is not None:
            return self.text.encode()
        if self.base64 is not None:
            return b64decode(self.base64)
        return None


class WorkspaceDir(_Model):
    """A directory: from a host directory, a URL prefix, a git repository, or empty.

    ``mode`` is the directory's own (default 0o755, or the host directory's); what is
    inside keeps its modes.
    """

    path: Annotated[str, AfterValidator(partial(_target, root_ok=True))]
    mode: Mode = None
    host: HostPath = None
    url: Url = None
    git: GitSource | None = None

    @field_validator("git", mode="before")
    @classmethod
    def _git_shorthand(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> WorkspaceDir:
        given = [k for k in ("host", "url", "git") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of host, url, git (got {' and '.join(given)})")
        return self


class SetupCommand(_Model):
    """A setup command: a shell string or an argv list, with a timeout in seconds."""

    run: str | list[str]
    timeout: float = Field(default=3600.0, gt=0)

    @field_validator("run")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("is empty; give a shell string or an argv list")
        if any("\x00" in part for part in ([value] if isinstance(value, str) else value)):
            raise ValueError("contains a NUL byte")
        return value


def check_contents(files: list[WorkspaceFile], dirs: list[WorkspaceDir]) -> None:
    """Refuse two entries for one path and inline content over ``INLINE_LIMIT``."""
    seen: dict[str, str] = {}
    inline = 0
    kinds: list[tuple[str, Sequence[WorkspaceFile | WorkspaceDir]]] = [
        ("dirs", dirs),
        ("files", files),
    ]
    for kind, entries in kinds:
        for i, entry in enumerate(entries):
            where = f"{kind}[{i}]"
            if entry.path in seen:
                raise ValueError(f"{where}.path: {entry.path!r} is also {seen[entry.path]}.path")
            seen[entry.path] = where
            data = entry.inline if isinstance(entry, WorkspaceFile) else None
            inline += len(data or b"")
            if inline > INLINE_LIMIT:
                raise ValueError(
                    f"{where}: inline content passes {INLINE_LIMIT} bytes in all; put big "
                    f"content in a host file or at a URL (read on the worker) instead"
                )


def check_excludes(patterns: list[str]) -> list[str]:
    """Refuse patterns that are not gitignore-style (``pathspec``)."""
    import pathspec

    for i, pattern in enumerate(patterns):
        if "\x00" in pattern or "\n" in pattern:
            raise ValueError(f"exclude[{i}]: {pattern!r} holds a NUL or newline")
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except Exception as exc:
            message = f"exclude[{i}]: {pattern!r} is not a gitignore pattern ({exc})"
            raise ValueError(message) from None
    return patterns
