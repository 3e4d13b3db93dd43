"""Settings from ``sandbank.toml`` files and ``SANDBANK_*`` variables, merged in one place.

Lowest to highest: built-in defaults, the user's file (``~/.config/sandbank/sandbank.toml``),
the project's (the nearest ``sandbank.toml`` from the working directory upwards), then
``SANDBANK_*`` variables; explicit arguments (CLI flags, ``get_provider`` options) win over
all. ``SANDBANK_CONFIG=PATH`` names the one file to read instead of the user's and project's.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbank.errors import ConfigurationError

__all__ = [
    "ENV_VARIABLES",
    "FILE_NAME",
    "Config",
    "LoadedConfig",
    "Temporal",
    "config_files",
    "load_config",
]

FILE_NAME = "sandbank.toml"
ENV_VARIABLES = {
    "SANDBANK_PROVIDER": "provider",
    "SANDBANK_STORE": "store",
    "SANDBANK_TEMPORAL_ADDRESS": "temporal.address",
    "SANDBANK_TEMPORAL_NAMESPACE": "temporal.namespace",
    "SANDBANK_TEMPORAL_TLS": "temporal.tls",
    "SANDBANK_TEMPORAL_TLS_CERT": "temporal.tls_cert",
    "SANDBANK_TEMPORAL_TLS_KEY": "temporal.tls_key",
    "SANDBANK_TEMPORAL_TLS_CA": "temporal.tls_ca",
}
"""Variable -> setting; provider options are ``SANDBANK_PROVIDERS__<NAME>__<OPTION>``."""
_PROVIDER_VAR = re.compile(r"^SANDBANK_PROVIDERS__([A-Za-z0-9_-]+?)__([A-Za-z0-9_]+)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Temporal(_Model):
    """Where durable sessions and workers connect."""

    address: str = "localhost:7233"
    namespace: str = "default"
    tls: bool = Field(default=False, description="connect with TLS (implied by the files below)")
    tls_cert: str | None = Field(default=None, description="client certificate (PEM) for mTLS")
    tls_key: str | None = Field(default=None, description="client private key (PEM) for mTLS")
    tls_ca: str | None = Field(default=None, description="server CA (PEM), if not a public one")

    def tls_config(self, tls: bool = False) -> Any:
        """``Client.connect(tls=...)``: False, True, or a ``TLSConfig`` with the files read."""
        if not (self.tls_cert or self.tls_key or self.tls_ca):
            return tls or self.tls
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError(
                "temporal.tls_cert and temporal.tls_key go together; set both or neither"
            )
        from temporalio.service import TLSConfig

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the Temporal TLS file {path}: {exc.strerror}; fix the path "
                    f"in the config (`sandbank config show` says where it is set)"
                ) from None

        return TLSConfig(
            client_cert=read(self.tls_cert),
            client_private_key=read(self.tls_key),
            server_root_ca_cert=read(self.tls_ca),
        )


class Config(_Model):
    """The merged settings."""

    provider: str = Field(default="local", description="the provider used when none is named")
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options per provider, e.g. providers.docker.image"
    )
    store: str | None = Field(default=None, description="snapshot store URL")
    temporal: Temporal = Field(default_factory=Temporal)

    def provider_options(self, name: str) -> dict[str, Any]:
        return dict(self.providers.get(name, {}))


@dataclass(frozen=True)
class LoadedConfig:
    """The settings and, for each dotted key set anywhere, where its value came from."""

    config: Config
    sources: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, Any, str]]:
        """``(key, value, source)`` for every setting, defaults included."""
        flat = _flatten(self.config.model_dump())
        return [(key, value, self.sources.get(key, "default")) for key, value in flat.items()]


def config_files(cwd: str | os.PathLike[str] | None = None) -> list[Path]:
    """The files read, lowest precedence first (only those that exist)."""
    explicit = os.environ.get("SANDBANK_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConfigurationError(
                f"SANDBANK_CONFIG names {path}, which does not exist; create it or unset "
                f"SANDBANK_CONFIG"
            )
        return [path]
    files = []
    user = Path(platformdirs.user_config_dir("sandbank")) / FILE_NAME
    if user.is_file():
        files.append(user)
    start = Path(cwd or os.getcwd()).absolute()
    for folder in (start, *start.parents):
        if (folder / FILE_NAME).is_file():
            if folder / FILE_NAME != user:
                files.append(folder / FILE_NAME)
            break
    return files


def load_config(cwd: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """Read the files and variables now, merged (see the module docstring)."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in config_files(cwd):
        data = _read_file(path)
        _merge(merged, data, sources, str(path))
    for name, data in _environment().items():
        _merge(merged, data, sources, f"${name}")
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigurationError(_describe_env(exc, sources)) from None
    return LoadedConfig(config, sources)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the config file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {len(text.splitlines())})"
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}{where}") from None
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            line = _line_of(text, [str(p) for p in err["loc"]])
            where = f"{path}, line {line}" if line else str(path)
            problems.append(f"{where}: {key}: {err['msg']}")
        raise ConfigurationError(
            "invalid config: " + "; ".join(problems) + " (see `sandbank config show`)"
        ) from None
    return data


def _line_of(text: str, loc: list[str]) -> int | None:
    """The line where the key at ``loc`` (or its nearest parent) is set, if it can be found."""
    table: list[str] = []
    best = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\[\]]+?)\s*\]$", stripped)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(1).split(".")]
            if table == loc[: len(table)] and best is None:
                best = number
            continue
        key = re.match(r"^([A-Za-z0-9_\-\"'.]+)\s*=", stripped)
        if key:
            path = table + [p.strip().strip("\"'") for p in key.group(1).split(".")]
            if path == loc[: len(path)]:
                return number
    return best


def _environment() -> dict[str, dict[str, Any]]:
    """Each ``SANDBANK_*`` setting variable as a nested dict (option values parsed as JSON)."""
    found: dict[str, dict[str, Any]] = {}
    for name, text in sorted(os.environ.items()):
        value: Any = text
        if name in ENV_VARIABLES:
            keys = ENV_VARIABLES[name].split(".")
        elif match := _PROVIDER_VAR.match(name):
            keys = ["providers", match.group(1).lower(), match.group(2).lower()]
            value = _json_or_text(text)
        else:
            continue
        data: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            data = {key: data}
        found[name] = data
    return found


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _merge(into: dict[str, Any], data: Mapping[str, Any], sources: dict[str, str], src: str,
           prefix: str = "") -> None:  # fmt: skip
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key, {}), dict):
            _merge(into.setdefault(key, {}), value, sources, src, dotted + ".")
        else:
            into[key] = value
            for stale in [k for k in sources if k.startswith(dotted + ".")]:
                del sources[stale]
            sources[dotted] = src


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _describe_env(exc: ValidationError, sources: dict[str, str]) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        problems.append(f"{sources.get(key, 'config')}: {key}: {err['msg']}")
    return "invalid config: " + "; ".join(problems)
