"""Providers by name, from the ``sandbank.providers`` entry-point group.

Built-in providers register through sandbank's own pyproject exactly like third-party
ones. Listing reads metadata only; a provider's module (and its SDK) is imported on first
use, and a missing SDK becomes ``ProviderUnavailable`` with the install hint.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sandbank.errors import ConfigurationError, ProviderConflict, ProviderUnavailable, RegistryError
from sandbank.providers.base import Provider, option_names

__all__ = ["ENTRY_POINT_GROUP", "ProviderSpec", "get_provider", "list_providers", "load_provider"]

ENTRY_POINT_GROUP = "sandbank.providers"


@dataclass(frozen=True)
class ProviderSpec:
    """A registered provider, known from metadata alone."""

    name: str
    target: str
    """``module:Class`` of the provider."""
    distribution: str

    @property
    def builtin(self) -> bool:
        return self.distribution == "sandbank"

    @property
    def install_hint(self) -> str:
        if self.builtin:
            return f"pip install 'sandbank[{self.name}]'"
        return f"pip install --upgrade {self.distribution}"


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "<unknown>"


def _specs() -> dict[str, ProviderSpec]:
    found: dict[str, ProviderSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ProviderSpec(name=ep.name, target=ep.value, distribution=_distribution(ep))
        other = found.get(spec.name)
        if other is None or other == spec:
            found[spec.name] = spec
            continue
        raise ProviderConflict(
            f"provider name {spec.name!r} is registered twice: by {other.distribution} "
            f"({other.target}) and by {spec.distribution} ({spec.target}); "
            f"uninstall one of the two distributions"
        )
    return found


def list_providers() -> list[ProviderSpec]:
    """Every registered provider, sorted by name. Imports no provider module."""
    return sorted(_specs().values(), key=lambda s: s.name)


def load_provider(name: str) -> type[Provider]:
    """The provider class registered as ``name``, importing its module now."""
    specs = _specs()
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise RegistryError(
            f"no provider named {name!r} (registered: {known}); a third-party provider "
            f"registers in the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    module_name, _, attr = spec.target.partition(":")
    try:
        module = __import__(module_name, fromlist=["_"])
    except ImportError as exc:
        raise ProviderUnavailable(
            f"provider {name!r} cannot be imported ({exc}); install it with: {spec.install_hint}",
            retryable=False,
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, Provider)):
        raise RegistryError(
            f"entry point {name!r} = {spec.target!r} from {spec.distribution} "
            f"is not a sandbank Provider subclass"
        )
    declared = getattr(obj, "name", None)
    if declared != name:
        raise RegistryError(
            f"entry point {name!r} = {spec.target!r} from {spec.distribution} loads a provider "
            f"whose name is {declared!r}; a provider's `name` must equal its entry-point name, "
            f"so set `name = {name!r}` on the class or rename the entry point"
        )
    return obj


def get_provider(name: str | None = None, **options: Any) -> Provider:
    """An instance of the provider registered as ``name``, configured with ``options``.

    ``name`` defaults to the configured provider, and ``options`` go on top of the
    configured ones (``sandbank.config``). Options the constructor does not accept (or
    required ones left out) raise ``ConfigurationError`` naming the options it accepts.
    """
    from sandbank.config import load_config

    config = load_config().config
    name = name or config.provider
    configured = config.provider_options(name)
    options = {**configured, **options}
    note = (
        f" ({sorted(configured)} set in the config: `sandbank config show`)" if configured else ""
    )
    cls = load_provider(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        accepted = ", ".join(option_names(cls)) or "none"
        raise ConfigurationError(
            f"provider {name!r} cannot be configured with {sorted(options) or 'no options'} "
            f"({exc}); it accepts: {accepted}{note}"
        ) from None
    try:
        return cls(**options)
    except ConfigurationError as exc:
        if not note:
            raise
        raise ConfigurationError(f"{exc}{note}") from None
