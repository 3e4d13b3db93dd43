"""The template provider of examples/provider-template passes the conformance suite.

Its own tests run in a subprocess, as a provider package's CI would run them, with the
template importable and registered through the entry point its pyproject declares.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "provider-template"
RESIDUE = re.compile(r"sandbank-conformance-[0-9a-f]{12}")
"""What the suite's probes outside the workspace are called."""


def _host_tmp_residue() -> set[str]:
    return {name for name in os.listdir("/tmp") if RESIDUE.match(name)}


@pytest.fixture
def template_env(tmp_path: Path) -> dict[str, str]:
    """An environment where the template is importable and registered as ``template``."""
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]["sandbank.providers"]
    info = tmp_path / "site" / "sandbank_provider_template-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sandbank.providers]\n{lines}")
    path = [str(tmp_path / "site"), str(TEMPLATE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def test_template_passes_the_suite(template_env: dict[str, str], tmp_path: Path) -> None:
    before = _host_tmp_residue()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "pytest")],
        cwd=TEMPLATE, env=template_env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\d{2,} passed", summary) and "failed" not in summary, summary
    assert _host_tmp_residue() - before == set(), "the suite left files in the host's /tmp"


def test_template_through_the_registry(template_env: dict[str, str], tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sandbank", "conformance", "template", "--json",
         "-o", f"root={tmp_path / 'boxes'}", "-k", "exit_code or network or user or image"],
        env=template_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    report = json.loads(run.stdout)
    assert report["isolation"] == "none (commands run unconfined on the host)"
    outcomes = {r["test"]: r["outcome"] for r in report["results"]}
    for name in ["test_network_off_refused", "test_user_refused", "test_image_refused"]:
        assert outcomes[name] == "passed", name
    assert outcomes["test_network_off"] == "skipped"


def test_template_option_errors(template_env: dict[str, str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sandbank", "conformance", "template", "-o", "colour=red"],
        env=template_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "it accepts: root" in run.stderr and "Traceback" not in run.stderr


def test_template_is_about_100_lines() -> None:
    code = [
        line
        for line in (TEMPLATE / "sandbank_template.py").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(code) <= 120, len(code)
