"""Manifest: image, resources, environment, working directory and network of a workspace.

It validates with messages that name the field, and round-trips through JSON and TOML.
Later work extends this one model (files, secrets, setup commands); there is no second one.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import PurePosixPath
from typing import Any

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbank.errors import ManifestError
from sandbank.manifest.contents import (
    SetupCommand,
    WorkspaceDir,
    WorkspaceFile,
    check_contents,
    check_excludes,
)
from sandbank.secrets import check_reference

__all__ = ["Image", "Manifest", "Resources"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_memory(value: int | str) -> int:
    """Bytes from an int or a string such as ``512Mi``, ``2g`` or ``1GiB``."""
    if isinstance(value, int):
        return value
    match = _MEMORY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a memory size; write bytes or e.g. '512Mi', '2G'")
    number, unit = match.groups()
    unit = (unit or "").lower().rstrip("b")
    if unit.endswith("i"):
        factor = 1024 ** ("kmgt".index(unit[0]) + 1)
    else:
        factor = _UNITS[unit]
    return int(float(number) * factor)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Model):
    """Base image: a default name plus per-provider hints (``{"docker": "python:3.12-slim"}``)."""

    name: str | None = None
    hints: dict[str, str] = Field(default_factory=dict)

    def for_provider(self, provider: str, default: str | None = None) -> str | None:
        """The image to use on ``provider``: its hint, else the name, else ``default``."""
        return self.hints.get(provider) or self.name or default


class Resources(_Model):
    """Resource limits; ``None`` means the provider's default."""

    cpu: float | None = Field(default=None, gt=0, description="CPU cores, may be fractional")
    memory: int | None = Field(default=None, gt=0, description="bytes; accepts '512Mi', '2G'")
    pids: int | None = Field(default=None, gt=0, description="maximum number of processes")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_memory(value)
        return value


class Manifest(_Model):
    """Everything a provider needs to create a workspace, independent of the provider."""

    image: Image = Field(default_factory=Image)
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = Field(default=".", description="where commands start, relative to the root")
    network: bool = Field(default=False, description="outbound network access")
    user: str | None = Field(default=None, description="run commands as this user (e.g. '1000')")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="variable name -> reference ('env:VAR', 'file:/path', a URL), "
        "read on the worker for each command; the value never enters the manifest",
    )
    ports: list[int] = Field(
        default_factory=list, description="TCP ports in the sandbox reachable via port_url()"
    )
    # Workspace contents (sandbank.manifest.contents), applied by create_sandbox.
    dirs: list[WorkspaceDir] = Field(default_factory=list)
    files: list[WorkspaceFile] = Field(default_factory=list)
    setup: list[SetupCommand] = Field(default_factory=list, description="run once, in order")
    exclude: list[str] = Field(
        default_factory=list, description="gitignore patterns checkpoints leave out"
    )

    @field_validator("image", mode="before")
    @classmethod
    def _image(cls, value: Any) -> Any:
        if value is None:
            return {}
        return {"name": value} if isinstance(value, str) else value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
            if "\x00" in text:
                raise ValueError(f"environment variable {name!r} contains a NUL byte")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for name, reference in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"secret name {name!r} is not a valid environment variable name")
            try:
                check_reference(reference)
            except ValueError as exc:
                raise ValueError(f"the reference of secret {name!r} {exc}") from None
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not a TCP port (1-65535)")
        if len(set(value)) != len(value):
            raise ValueError(f"ports {value} lists a port twice")
        return value

    @model_validator(mode="after")
    def _secret_not_env(self) -> Manifest:
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} in both env and secrets; keep credentials in secrets"
            )
        return self

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"workdir {value!r} must be relative to the workspace, without '..'")
        return str(path)

    @field_validator("setup", mode="before")
    @classmethod
    def _setup_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"run": v} if isinstance(v, str | list) else v for v in value]
        return value

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[str]) -> list[str]:
        return check_excludes(value)

    @model_validator(mode="after")
    def _contents(self) -> Manifest:
        check_contents(self.files, self.dirs)
        return self

    @property
    def has_contents(self) -> bool:
        """Whether creating it means more than an empty sandbox (files, dirs or setup)."""
        return bool(self.files or self.dirs or self.setup)

    @classmethod
    def parse(cls, data: Manifest | dict[str, Any] | None) -> Manifest:
        """A manifest from a dict (or ``None`` for the defaults), raising ``ManifestError``."""
        if isinstance(data, Manifest):
            return data
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ManifestError(_describe(exc)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ManifestError(_describe(exc)) from None

    @classmethod
    def from_toml(cls, text: str) -> Manifest:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"manifest is not valid TOML: {exc}") from None
        return cls.parse(data)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_defaults=True, exclude_none=True))

    def merged(self, **overrides: Any) -> Manifest:
        """A copy with top-level fields replaced, validated again."""
        return Manifest.parse({**self.model_dump(), **overrides})

    def without_contents(self) -> Manifest:
        """This manifest less what only creation uses (files, dirs, setup): what a provider
        keeps beside a live sandbox, so that inline content is not copied into its records."""
        return self.merged(files=[], dirs=[], setup=[])


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        where = where.lstrip(".")
        if not where and err["type"] != "value_error":
            where = "manifest"
        lines.append(f"{where}: {message}" if where else message)
    return "invalid manifest: " + "; ".join(lines)
