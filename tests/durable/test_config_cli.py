"""The durable CLI takes Temporal's address, namespace and TLS from sandbank.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "sandbank.toml"


def sandbank(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (it ends with os._exit once connected)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBANK_TEMPORAL")}
    env["SANDBANK_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "sandbank", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_session_commands_connect_where_the_config_says(
    config_file: Path, temporal_address: str
) -> None:
    config_file.write_text(f'[temporal]\naddress = "{temporal_address}"\nnamespace = "default"\n')
    listed = sandbank(config_file, "session", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)

    config_file.write_text(f'[temporal]\naddress = "{temporal_address}"\nnamespace = "nope-ns"\n')
    wrong = sandbank(config_file, "session", "ls")
    assert wrong.returncode == 2 and "no namespace 'nope-ns'" in wrong.stderr
    explicit = sandbank(config_file, "session", "--namespace", "default", "ls", "--json")
    assert explicit.returncode == 0, explicit.stderr  # a flag wins over the file


def test_tls_files_from_the_config_are_checked(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text(
        f'[temporal]\naddress = "127.0.0.1:1"\ntls_cert = "{tmp_path}/missing.pem"\n'
        f'tls_key = "{tmp_path}/missing.key"\n'
    )
    result = sandbank(config_file, "session", "ls")
    assert result.returncode == 2, result.stderr
    assert "cannot read the Temporal TLS file" in result.stderr and "missing.pem" in result.stderr
