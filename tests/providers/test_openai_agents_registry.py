"""The oa-* providers through sandbank's registry and CLI (needs this checkout installed).

Entry points come from the installed distribution's metadata: run these with sandbank
installed from this checkout (``pip install -e .``), as CI does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbank.errors import ConfigurationError
from sandbank.providers.openai_agents import DockerAgentsProvider, UnixLocalAgentsProvider
from sandbank.providers.registry import get_provider, list_providers, load_provider

BACKENDS = ["unix_local", "docker", "modal", "e2b", "daytona", "runloop", "blaxel", "vercel"]
ALL = [f"oa-{b}" for b in [*BACKENDS, "cloudflare"]]


def _sandbank(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nfrom sandbank.cli import cli\ncli({list(args)!r})"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_every_client_is_registered() -> None:
    """Each SDK client has an oa-* entry point, each a provider class named like it."""
    names = {spec.name for spec in list_providers()}
    assert set(ALL) <= names
    for name in ALL:
        cls = load_provider(name)
        assert cls.name == name
        assert cls.backend_id == name.removeprefix("oa-")


def test_get_provider_builds_with_options(tmp_path: Path) -> None:
    """get_provider passes options through; unknown options are refused."""
    provider = get_provider("oa-unix_local", state_dir=str(tmp_path))
    assert isinstance(provider, UnixLocalAgentsProvider) and provider.state_dir == tmp_path
    docker = get_provider("oa-docker", image="sandbank-test:bookworm")
    assert isinstance(docker, DockerAgentsProvider) and docker.image == "sandbank-test:bookworm"
    with pytest.raises(ConfigurationError, match="colour"):
        get_provider("oa-unix_local", colour="blue")


def test_providers_lists_missing_cloud_sdk_with_hint() -> None:
    """`sandbank providers` shows a hosted client whose SDK is missing, with its install line."""
    run = _sandbank("providers", "--json", prelude="sys.modules['modal'] = None")
    assert run.returncode == 0, run.stderr
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    assert rows["oa-modal"]["installed"] is False
    assert "pip install 'openai-agents[modal]'" in rows["oa-modal"]["detail"]
    assert rows["oa-unix_local"]["installed"] is True
    assert rows["oa-unix_local"]["capabilities"] == ["host_path"]


def test_conformance_matrix_oa_unix_local(tmp_path: Path) -> None:
    """`sandbank conformance oa-unix_local --json` prints the matrix for a subset."""
    run = _sandbank(
        "conformance",
        "oa-unix_local",
        "--json",
        "-o",
        f"state_dir={tmp_path}",
        "-k",
        "exit_code or stdin or host_path or pause",
    )
    report = json.loads(run.stdout)
    assert report["provider"] == "oa-unix_local" and report["ok"] is True, run.stderr
    results = {r["test"]: r["outcome"] for r in report["results"]}
    assert results["test_stdin_large"] == "passed"
    assert results["test_host_path"] == "passed"
    assert results["test_pause_resume"] == "skipped"
