"""`sandbank conformance`: the matrix for the local provider, and the capability marker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbank.conformance.runner import ResultCollector

pytest_plugins = ["pytester"]

SUBSET = "exit_code or stdout_stderr or pause or resource_limits or pids or host_path or network"


def _conformance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbank", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_json_matrix_local(bwrap: str, tmp_path: Path) -> None:
    run = _conformance("local", "--json", "-o", f"state_dir={tmp_path}", "-k", SUBSET)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["provider"] == "local" and report["ok"] is True
    assert report["capabilities"]["host_path"] is True
    assert report["capabilities"]["pause"] is False
    results = {r["test"]: r for r in report["results"]}
    assert results["test_exit_code[42]"]["outcome"] == "passed"
    assert results["test_exit_code[42]"]["group"] == "ExecTests"
    assert results["test_exit_code[42]"]["behaviour"].startswith("The exit code")
    assert results["test_pause_resume"] == {
        **results["test_pause_resume"],
        "outcome": "skipped",
        "reason": "provider local does not declare capability pause",
    }
    assert results["test_pause_not_supported"]["outcome"] == "passed"
    assert results["test_pids_limit"]["reason"] == (
        "provider local does not declare capability resource_limits"
    )
    assert results["test_host_path"]["outcome"] == "passed"
    assert report["summary"]["failed"] == report["summary"]["error"] == 0
    assert report["summary"]["passed"] >= 6


def test_table_local(bwrap: str, tmp_path: Path) -> None:
    run = _conformance("local", "-o", f"state_dir={tmp_path}", "-k", "exit_code or pause")
    assert run.returncode == 0, run.stderr
    assert "test_exit_code[42]" in run.stdout
    assert "does not declare capability pause" in run.stdout
    assert "capabilities:" in run.stdout
    assert "4 passed, 0 failed, 0 errors, 1 skipped, 0 expected failures" in run.stdout


def test_unknown_provider() -> None:
    run = _conformance("no-such-provider", "--json")
    assert run.returncode == 2
    assert "no provider named 'no-such-provider'" in run.stderr


def test_nothing_selected_fails(bwrap: str, tmp_path: Path) -> None:
    run = _conformance("local", "--json", "-o", f"state_dir={tmp_path}", "-k", "no_such_test")
    assert run.returncode == 1
    assert json.loads(run.stdout)["ok"] is False


SAMPLE = '''
import pytest
from sandbank.providers.base import Capabilities


class FakeProvider:
    name = "fake"
    capabilities = Capabilities(pause=True)


@pytest.fixture
def provider():
    return FakeProvider()


def test_passes():
    """Passes."""


def test_fails():
    """Fails."""
    assert 1 == 2


@pytest.mark.sandbank_capability("pause")
def test_declared(provider):
    """Runs where pause is declared."""


@pytest.mark.sandbank_capability("host_path")
def test_undeclared():
    """Needs host_path."""


@pytest.mark.sandbank_capability("pause", declared=False)
def test_inverse():
    """Only without pause."""


@pytest.fixture
def broken():
    raise RuntimeError("setup broke")


def test_setup_error(broken):
    """Setup fails."""
'''


def test_collector_and_capability_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    collector = ResultCollector()
    pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        plugins=[collector],
    )
    outcomes = {o.test: o for o in collector.outcomes.values()}
    assert {name: o.outcome for name, o in outcomes.items()} == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_declared": "passed",
        "test_undeclared": "skipped",
        "test_inverse": "skipped",
        "test_setup_error": "error",
    }
    assert outcomes["test_undeclared"].reason == (
        "provider fake does not declare capability host_path"
    )
    assert outcomes["test_inverse"].reason == "provider fake declares capability pause"
    assert "assert 1 == 2" in outcomes["test_fails"].reason
    assert "setup broke" in outcomes["test_setup_error"].reason
    assert outcomes["test_passes"].behaviour == "Passes."


def test_plugin_is_cheap() -> None:
    code = (
        "import sys; import sandbank.conformance.plugin; "
        "heavy = [m for m in ('pytest_asyncio', 'sandbank.conformance.suite', "
        "'sandbank.providers.local', 'sandbank.providers.docker', 'docker') if m in sys.modules]; "
        "print(heavy)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_expect_fail_that_passes_is_a_failure(bwrap: str, tmp_path: Path) -> None:
    run = _conformance(
        "local", "--json", "-o", f"state_dir={tmp_path}", "-k", "exit_code or stdout_stderr",
        "--expect-fail", "test_exit_code[42],test_stdout_stderr_separated",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    results = {r["test"]: r for r in report["results"]}
    assert results["test_exit_code[42]"]["outcome"] == "failed"
    assert "XPASS(strict)" in results["test_exit_code[42]"]["reason"]
    assert results["test_stdout_stderr_separated"]["outcome"] == "failed"
    assert results["test_exit_code[0]"]["outcome"] == "passed"


def test_expect_fail_of_an_unknown_test() -> None:
    run = _conformance("local", "--expect-fail", "test_no_such_behaviour")
    assert run.returncode == 2
    assert "test_no_such_behaviour" in run.stderr and "does not have" in run.stderr


EXPECTED = """
import pytest
from sandbank.conformance import ConformanceFixtures


class TestDeviations(ConformanceFixtures):
    expected_failures = {"test_known_gap": "not built yet", "test_fixed_already": "old gap"}

    @pytest.fixture
    def provider(self):
        return None

    async def test_known_gap(self):
        \"\"\"Fails, as declared.\"\"\"
        assert False, "the gap"

    async def test_fixed_already(self):
        \"\"\"Passes, although declared.\"\"\"

    async def test_plain(self):
        \"\"\"Passes.\"\"\"
"""


def test_expected_failures_are_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_expected=EXPECTED)
    collector = ResultCollector()
    pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=strict",
        "-o", "asyncio_default_fixture_loop_scope=function", plugins=[collector],
    )  # fmt: skip
    outcomes = {o.test: o for o in collector.outcomes.values()}
    assert {name: o.outcome for name, o in outcomes.items()} == {
        "test_known_gap": "xfailed",
        "test_fixed_already": "failed",
        "test_plain": "passed",
    }
    assert outcomes["test_known_gap"].reason == "expected deviation: not built yet"
    assert "XPASS(strict)" in outcomes["test_fixed_already"].reason


def test_expected_failures_must_name_tests() -> None:
    from sandbank.conformance import ProviderConformance
    from sandbank.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="test_nope"):
        type("T", (ProviderConformance,), {"expected_failures": {"test_nope": "x"}})
