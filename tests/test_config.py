"""sandbank.toml files and SANDBANK_* variables: discovery, precedence, errors, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbank.cli import cli
from sandbank.config import load_config
from sandbank.errors import ConfigurationError
from sandbank.providers.local import LocalProvider
from sandbank.providers.registry import get_provider


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A user config dir and a project with a nested working directory, nothing set yet."""
    for name in list(os.environ):
        if name.startswith("SANDBANK_"):
            monkeypatch.delenv(name)
    user = tmp_path / "xdg" / "sandbank"
    user.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "project"
    cwd = project / "src" / "pkg"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return {"user": user / "sandbank.toml", "project": project / "sandbank.toml", "cwd": cwd}


def test_defaults_without_files(dirs: dict[str, Path]) -> None:
    loaded = load_config()
    assert loaded.config.provider == "local"
    assert loaded.config.temporal.address == "localhost:7233"
    assert {src for _, _, src in loaded.rows()} == {"default"}


def test_precedence_user_project_env(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs["user"].write_text(
        'provider = "docker"\nstore = "file:///user"\n'
        '[providers.docker]\nimage = "user:1"\nnetwork = "user-net"\n'
        '[temporal]\naddress = "user:7233"\nnamespace = "user-ns"\n'
    )
    dirs["project"].write_text('store = "s3://project/x"\n[providers.docker]\nimage = "proj:2"\n')
    monkeypatch.setenv("SANDBANK_TEMPORAL_ADDRESS", "env:7233")
    monkeypatch.setenv("SANDBANK_PROVIDERS__DOCKER__TIMEOUT", "12.5")
    monkeypatch.setenv("SANDBANK_STORE_KEY", "not-a-setting")  # other SANDBANK_* are ignored
    loaded = load_config()
    config = loaded.config
    assert config.provider == "docker"
    assert config.store == "s3://project/x"
    assert config.provider_options("docker") == {
        "image": "proj:2", "network": "user-net", "timeout": 12.5,
    }  # fmt: skip
    assert config.temporal.address == "env:7233"
    assert config.temporal.namespace == "user-ns"
    sources = {key: src for key, _, src in loaded.rows()}
    assert sources["provider"] == str(dirs["user"])
    assert sources["store"] == str(dirs["project"])
    assert sources["providers.docker.image"] == str(dirs["project"])
    assert sources["providers.docker.network"] == str(dirs["user"])
    assert sources["providers.docker.timeout"] == "$SANDBANK_PROVIDERS__DOCKER__TIMEOUT"
    assert sources["temporal.address"] == "$SANDBANK_TEMPORAL_ADDRESS"
    assert sources["temporal.tls"] == "default"


def test_sandbank_config_replaces_the_files(
    dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs["project"].write_text('provider = "docker"\n')
    explicit = tmp_path / "other.toml"
    explicit.write_text('store = "memory://x"\n')
    monkeypatch.setenv("SANDBANK_CONFIG", str(explicit))
    config = load_config().config
    assert (config.provider, config.store) == ("local", "memory://x")
    monkeypatch.setenv("SANDBANK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match=r"SANDBANK_CONFIG names .*missing.toml"):
        load_config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('provider = "docker"\nstore = nope\n[a]\n', r"sandbank.toml is not valid TOML: .*line 2"),
        ('provider = "docker"\nstore = [\n', r"sandbank.toml is not valid TOML: .*\(line 2\)"),
        (
            'provider = "docker"\n\n[temporal]\ntls = "maybe"\n',
            r"sandbank.toml, line 4: temporal.tls",
        ),
        ('provider = "x"\n[temporal]\nport = 1\n', r"sandbank.toml, line 3: temporal.port: Extra"),
        ("providers = 3\n", r"sandbank.toml, line 1: providers: "),
        ('[providers]\ndocker = "img"\n', r"sandbank.toml, line 2: providers.docker"),
    ],
)
def test_malformed_file_names_file_line_and_key(
    dirs: dict[str, Path], text: str, message: str
) -> None:
    dirs["project"].write_text(text)
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config()
    assert str(dirs["project"]) in str(info.value)


def test_bad_variable_names_the_variable(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBANK_TEMPORAL_TLS", "perhaps")
    with pytest.raises(ConfigurationError, match=r"\$SANDBANK_TEMPORAL_TLS: temporal.tls"):
        load_config()


def test_get_provider_reads_the_config_explicit_wins(dirs: dict[str, Path], tmp_path: Path) -> None:
    dirs["project"].write_text(
        f'provider = "local"\n[providers.local]\nstate_dir = "{tmp_path}/cfg-state"\n'
        'isolation = "none"\n'
    )
    provider = get_provider()
    assert isinstance(provider, LocalProvider)
    assert provider.state_dir == tmp_path / "cfg-state"
    assert provider.isolation_mode == "none"
    explicit = get_provider("local", state_dir=tmp_path / "arg")
    assert isinstance(explicit, LocalProvider)
    assert explicit.state_dir == tmp_path / "arg" and explicit.isolation_mode == "none"


def test_get_provider_bad_configured_option(dirs: dict[str, Path]) -> None:
    dirs["project"].write_text('[providers.local]\ncolour = "blue"\n')
    with pytest.raises(ConfigurationError, match=r"colour.*sandbank config show"):
        get_provider("local")


def test_docker_image_from_config(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("SANDBANK_PROVIDERS__DOCKER__IMAGE", "example/agent:3")
    provider = get_provider("docker")
    assert getattr(provider, "image", None) == "example/agent:3"


def test_temporal_tls_files(dirs: dict[str, Path], tmp_path: Path) -> None:
    from temporalio.service import TLSConfig

    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    dirs["project"].write_text(
        f'[temporal]\ntls_cert = "{tmp_path}/c.pem"\ntls_key = "{tmp_path}/k.pem"\n'
    )
    tls = load_config().config.temporal.tls_config()
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")
    dirs["project"].write_text(f'[temporal]\ntls_cert = "{tmp_path}/c.pem"\n')
    with pytest.raises(ConfigurationError, match="go together"):
        load_config().config.temporal.tls_config()
    dirs["project"].write_text(f'[temporal]\ntls_ca = "{tmp_path}/nope.pem"\n')
    with pytest.raises(ConfigurationError, match="cannot read the Temporal TLS file"):
        load_config().config.temporal.tls_config()
    dirs["project"].write_text("[temporal]\ntls = true\n")
    assert load_config().config.temporal.tls_config() is True


def test_config_show_table_and_json(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    dirs["project"].write_text('[providers.docker]\nimage = "proj:2"\n')
    monkeypatch.setenv("SANDBANK_STORE", "memory://env")
    runner = CliRunner()
    table = runner.invoke(cli, ["config", "show"])
    assert table.exit_code == 0, table.output
    assert "providers.docker.image" in table.output and '"proj:2"' in table.output
    assert "$SANDBANK_STORE" in table.output
    data = json.loads(runner.invoke(cli, ["config", "show", "--json"]).output)
    assert data["files"] == [str(dirs["project"])]
    rows = {row["key"]: row for row in data["settings"]}
    assert rows["store"] == {"key": "store", "value": "memory://env", "source": "$SANDBANK_STORE"}
    assert rows["provider"]["source"] == "default"
    dirs["project"].write_text("provider = \n")
    broken = runner.invoke(cli, ["config", "show"])
    assert broken.exit_code == 2 and "not valid TOML" in broken.output


def test_cli_commands_take_their_defaults_from_the_config(
    dirs: dict[str, Path], tmp_path: Path
) -> None:
    dirs["project"].write_text(
        f'provider = "local"\nstore = "file://{tmp_path}/store"\n'
        f'[providers.local]\nstate_dir = "{tmp_path}/state"\nisolation = "none"\n'
    )
    runner = CliRunner()
    ran = runner.invoke(cli, ["run", "--network", "--", "sh", "-c", "echo hi; exit 3"])
    assert (ran.exit_code, ran.output) == (3, "hi\n")
    assert (tmp_path / "state").is_dir()  # the configured provider options were used
    (tmp_path / "src").mkdir()
    made = runner.invoke(cli, ["snapshot", "create", str(tmp_path / "src"), "--json"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "store").is_dir()  # the configured store
    dirs["project"].write_text("store = 5\n")
    bad = runner.invoke(cli, ["snapshot", "ls"])
    assert bad.exit_code == 2 and "line 1: store" in bad.output
