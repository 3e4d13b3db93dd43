"""The CLI: providers, an ephemeral run, and managing sandboxes, through a real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def sandbank(
    *args: str, stdin: str | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbank", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def column(table: str, n: int) -> str:
    """The text of column ``n`` of a boxed rich table, its folded lines joined."""
    assert "…" not in table  # nothing is cut with an ellipsis
    rows = [line.split("│")[1:-1] for line in table.splitlines() if line.startswith("│")]
    return "".join(cells[n].strip() for cells in rows)


@pytest.fixture
def state(tmp_path: Path, bwrap: str) -> str:
    return f"state_dir={tmp_path / 'state'}"


def test_providers_json_lists_builtins() -> None:
    out = sandbank("providers", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["local"]["installed"]
    assert rows["local"]["isolation"].startswith("bubblewrap")
    assert "host_path" in rows["local"]["capabilities"]
    assert rows["docker"]["installed"]


def test_providers_table() -> None:
    out = sandbank("providers")
    assert out.returncode == 0, out.stderr
    assert "local" in out.stdout and "isolation" in out.stdout


def test_providers_table_folds_in_a_narrow_terminal() -> None:
    names = [row["name"] for row in json.loads(sandbank("providers", "--json").stdout)]
    out = sandbank("providers", columns=40)
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 40
    assert column(out.stdout, 0) == "".join(names)


def test_run_streams_output_and_passes_the_exit_code(state: str) -> None:
    out = sandbank(
        "run", "-p", "local", "-o", state, "--", "sh", "-c", "echo out; echo err >&2; exit 7"
    )
    assert out.returncode == 7
    assert out.stdout == "out\n"
    assert out.stderr == "err\n"


def test_run_leaves_no_sandbox_behind(state: str) -> None:
    assert sandbank("run", "-p", "local", "-o", state, "--", "true").returncode == 0
    listed = sandbank("sandbox", "ls", "-p", "local", "-o", state, "--json")
    assert json.loads(listed.stdout) == []


def test_run_timeout_is_a_one_line_error(state: str) -> None:
    out = sandbank("run", "-p", "local", "-o", state, "--timeout", "0.5", "--", "sleep", "5")
    assert out.returncode == 2
    assert "timed out after 0.5s" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_provider_is_a_one_line_error() -> None:
    out = sandbank("run", "-p", "nope", "--", "true")
    assert out.returncode == 2
    assert "no provider named 'nope'" in out.stderr


async def test_sandbox_ls_exec_rm(tmp_path: Path, state: str) -> None:
    from sandbank import get_provider

    provider = get_provider("local", state_dir=str(tmp_path / "state"))
    box = await provider.create()
    await box.write_file("note.txt", "kept\n")
    await box.aclose()

    listed = json.loads(sandbank("sandbox", "ls", "-p", "local", "-o", state, "--json").stdout)
    assert [row["id"] for row in listed] == [box.id]
    assert listed[0]["status"] == "running"

    out = sandbank("sandbox", "exec", "-p", "local", "-o", state, box.id, "--", "cat", "note.txt")
    assert (out.returncode, out.stdout) == (0, "kept\n")
    out = sandbank(
        "sandbox", "exec", "-p", "local", "-o", state, box.id, "--", "sh", "-c", "exit 3"
    )
    assert out.returncode == 3

    assert sandbank("sandbox", "rm", "-p", "local", "-o", state, box.id).returncode == 0
    missing = sandbank("sandbox", "exec", "-p", "local", "-o", state, box.id, "--", "true")
    assert missing.returncode == 2
    assert "not found" in missing.stderr


async def test_sandbox_ls_folds_ids_in_a_narrow_terminal(tmp_path: Path, state: str) -> None:
    """An id must be copyable into `sandbox rm` at any width: folded, never cut."""
    from sandbank import get_provider

    provider = get_provider("local", state_dir=str(tmp_path / "state"))
    box = await provider.create()
    await box.aclose()
    try:
        out = sandbank("sandbox", "ls", "-p", "local", "-o", state, columns=40)
        assert out.returncode == 0, out.stderr
        assert max(len(line) for line in out.stdout.splitlines()) <= 40
        assert len(box.id) > 8 and column(out.stdout, 0) == box.id
        assert column(out.stdout, 1) == "local"
    finally:
        await provider.destroy(box.id)


def test_docker_run_with_image(docker_image: str) -> None:
    out = sandbank(
        "run", "-p", "docker", "--image", docker_image, "--", "python3", "-c", "print(6*7)"
    )
    assert (out.returncode, out.stdout) == (0, "42\n")


@pytest.mark.parametrize("width", [30, 40, 60, 80, 120])
def test_print_table_never_cuts_and_keeps_ids_whole_when_there_is_room(width: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from sandbank.cli import print_table

    sid, path = "sb-" + "0123456789abcdef" * 2, "/a/rather/long/path/to/a/workspace/dir"
    table = Table("id", "provider", "status", "source")
    table.add_row(sid, "local", "running", path)
    sink = io.StringIO()
    print_table(table, Console(width=width, file=sink), whole=("id",))
    text = sink.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    assert [column(text, n) for n in range(4)] == [sid, "local", "running", path]
    if width >= 80:  # the others fold first: the id stays on one line
        assert any(f"│ {sid} " in line for line in text.splitlines())
