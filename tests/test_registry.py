"""The provider registry: entry points, laziness, conflicts, install hints, third parties."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbank import (
    ConfigurationError,
    Provider,
    ProviderConflict,
    ProviderUnavailable,
    RegistryError,
    get_provider,
    list_providers,
)

ACME_PROVIDER = '''
from sandbank import Capabilities, Provider, SandboxNotFound


class AcmeProvider(Provider):
    """A third-party provider that has no sandboxes; enough to prove discovery."""

    name = "acme"

    @property
    def capabilities(self):
        return Capabilities(ports=True)

    @property
    def isolation(self):
        return "acme microvm"

    async def create(self, manifest=None):
        raise NotImplementedError

    async def attach(self, sandbox_id):
        raise SandboxNotFound(self.name, sandbox_id)

    async def list(self):
        return []

    async def destroy(self, sandbox_id):
        raise SandboxNotFound(self.name, sandbox_id)

    async def _info(self, sandbox_id):
        raise SandboxNotFound(self.name, sandbox_id)


class NotAProvider:
    pass
'''


def make_distribution(
    site: Path, dist: str, module: str, entry_points: dict[str, str], code: str
) -> None:
    """Write an installed distribution (package + dist-info with entry points) into ``site``."""
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sandbank.providers]\n{lines}\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path where tests install tiny distributions."""
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith(("acme_", "broken_"))]:
            del sys.modules[name]


def test_builtins_are_registered_through_entry_points() -> None:
    specs = {s.name: s for s in list_providers()}
    assert specs["local"].distribution == "sandbank"
    assert specs["local"].target == "sandbank.providers.local:LocalProvider"
    assert specs["docker"].install_hint == "pip install 'sandbank[docker]'"


def test_listing_imports_no_provider_module_or_sdk() -> None:
    code = (
        "import sys, sandbank; names = [s.name for s in sandbank.list_providers()]; "
        "assert 'docker' in names; "
        "print([m for m in ('docker', 'sandbank.providers.docker', 'sandbank.providers.local') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_sdk_becomes_install_hint() -> None:
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "import sandbank\n"
        "try:\n    sandbank.get_provider('docker')\n"
        "except sandbank.ProviderUnavailable as e:\n    print('HINT', e.retryable, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("HINT False")
    assert "pip install 'sandbank[docker]'" in out.stdout


def test_unknown_name_lists_known_providers() -> None:
    with pytest.raises(
        RegistryError, match=r"no provider named 'nope' \(registered: .*docker.*local"
    ):
        get_provider("nope")


def test_third_party_distribution_is_found(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme": "acme_sandbox:AcmeProvider"}, ACME_PROVIDER
    )
    spec = {s.name: s for s in list_providers()}["acme"]
    assert spec.distribution == "acme-sandbox"
    assert spec.install_hint == "pip install --upgrade acme-sandbox"
    provider = get_provider("acme")
    assert isinstance(provider, Provider)
    assert provider.capabilities.names() == ["ports"]


def test_third_party_distribution_in_the_cli(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme": "acme_sandbox:AcmeProvider"}, ACME_PROVIDER
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "sandbank", "providers", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["acme"]["installed"] and rows["acme"]["available"]
    assert rows["acme"]["isolation"] == "acme microvm"
    assert rows["acme"]["capabilities"] == ["ports"]
    assert rows["acme"]["distribution"] == "acme-sandbox"


def test_two_distributions_claiming_one_name_is_an_error(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme": "acme_sandbox:AcmeProvider"}, ACME_PROVIDER
    )
    make_distribution(
        site, "acme-fork", "acme_fork", {"acme": "acme_fork:AcmeProvider"}, ACME_PROVIDER
    )
    with pytest.raises(ProviderConflict) as caught:
        list_providers()
    message = str(caught.value)
    assert "acme-sandbox" in message and "acme-fork" in message and "'acme'" in message


def test_a_third_party_may_not_take_a_builtin_name(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"docker": "acme_sandbox:AcmeProvider"}, ACME_PROVIDER
    )
    with pytest.raises(ProviderConflict, match=r"sandbank.*acme-sandbox|acme-sandbox.*sandbank"):
        get_provider("local")


def test_entry_point_that_is_not_a_provider(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme": "acme_sandbox:NotAProvider"}, ACME_PROVIDER
    )
    with pytest.raises(RegistryError, match="not a sandbank Provider subclass"):
        get_provider("acme")


def test_third_party_with_missing_dependency(site: Path) -> None:
    make_distribution(
        site,
        "broken-sandbox",
        "broken_sandbox",
        {"broken": "broken_sandbox:P"},
        "import no_such_sdk_xyz\n",
    )
    with pytest.raises(ProviderUnavailable, match="pip install --upgrade broken-sandbox"):
        get_provider("broken")


OPTIONED_PROVIDER = ACME_PROVIDER.replace(
    """    name = "acme"
""",
    """    name = "acme"

    def __init__(self, *, region: str, size: int = 1):
        super().__init__()
        self.region, self.size = region, size
""",
)


def test_name_must_equal_the_entry_point_name(site: Path) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme2": "acme_sandbox:AcmeProvider"}, ACME_PROVIDER
    )
    with pytest.raises(RegistryError, match=r"whose name is 'acme'.*set `name = 'acme2'`"):
        get_provider("acme2")


@pytest.mark.parametrize(
    "options", [{}, {"region": "eu", "colour": "red"}, {"region": "eu", "size": 1, "x": 2}]
)
def test_constructor_errors_name_the_accepted_options(
    site: Path, options: dict[str, object]
) -> None:
    make_distribution(
        site, "acme-sandbox", "acme_sandbox", {"acme": "acme_sandbox:AcmeProvider"},
        OPTIONED_PROVIDER,
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"it accepts: region, size") as caught:
        get_provider("acme", **options)
    assert "takes no options" not in str(caught.value)
    provider = get_provider("acme", region="eu", size=3)
    assert (provider.region, provider.size) == ("eu", 3)  # type: ignore[attr-defined]


def test_unknown_option_of_a_builtin(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\['colour'\].*accepts: state_dir, root"):
        get_provider("local", state_dir=str(tmp_path), colour="red")
    with pytest.raises(ConfigurationError, match=r"accepts: image, base_url, timeout"):
        get_provider("docker", colour="red")
