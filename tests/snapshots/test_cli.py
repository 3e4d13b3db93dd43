"""`sandbank snapshot ...`: every subcommand, for people and with --json."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sandbank.cli import cli

from .conftest import make_workspace, make_writable, tree_state


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, ["snapshot", *args], env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def run_json(*args: str, code: int = 0) -> Any:
    return json.loads(run(*args, "--json", code=code).stdout)


def narrow(*args: str, code: int = 0) -> str:
    """``sandbank snapshot ARGS`` in a real process on a 40-column terminal: its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "sandbank", "snapshot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "40"},
    )
    assert out.returncode == code, out.stdout + out.stderr
    assert "…" not in out.stdout  # nothing is cut with an ellipsis
    return out.stdout


def in_order(text: str, out: str) -> bool:
    """Whether the characters of ``text`` appear in ``out`` in order (folded over lines)."""
    rest = iter(out)
    return all(ch in rest for ch in text)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "ws")
    yield root
    make_writable(tmp_path)


def test_create_ls_show_diff_tag_rm_gc(ws: Path, tmp_path: Path) -> None:
    store = ["--store", f"file://{tmp_path}/store", "-o", "auto_mkdir=true"]
    first = run_json("create", str(ws), *store, "-t", "base", "-x", "*.bin")
    assert first["parent"] is None and first["tags"] == ["base"]
    assert first["stats"]["files"] == 5 and first["excludes"] == ["*.bin"]
    make_writable(ws)
    (ws / "added.txt").write_text("added\n")
    (ws / "src" / "main.py").write_text("print('changed')\n")
    (ws / "empty.txt").unlink()
    (ws / "readonly").chmod(0o555)
    second = run_json("create", str(ws), *store, "--parent", "latest", "-x", "*.bin")
    assert second["parent"] == first["id"]
    assert second["stats"]["read_bytes"] == len("added\n") + len("print('changed')\n")
    # for people: a one-line summary and tables
    out = run("create", str(ws), *store, "--parent", second["id"]).stdout
    assert "snapshot " in out and "files" in out
    listed = run_json("ls", *store)
    assert [r["id"] for r in listed][1:] == [second["id"], first["id"]]
    table = run("ls", *store).stdout
    assert first["id"] in table and second["id"] in table
    assert [r["id"] for r in run_json("ls", *store, "--tag", "base")] == [first["id"]]

    shown = run_json("show", second["id"][:6], *store, "--files")
    assert shown["record"]["id"] == second["id"] and shown["logical_bytes"] > 0
    assert {f["path"] for f in shown["files"]} >= {"added.txt", "src/run.sh", "src/current"}
    assert "src/run.sh" in run("show", second["id"], *store, "--files").stdout

    diff = run_json("diff", first["id"], second["id"], *store)
    assert diff["added"] == ["added.txt"] and diff["removed"] == ["empty.txt"]
    assert diff["changed"] == ["src/main.py"]
    text = run("diff", first["id"], second["id"], *store).stdout
    assert "+ added.txt" in text and "- empty.txt" in text and "M src/main.py" in text

    tagged = run_json("tag", second["id"], "keep", "nightly", *store)
    assert tagged["tags"] == ["keep", "nightly"]
    assert "keep, nightly" in run("tag", second["id"], "keep", *store).stdout

    assert run_json("rm", listed[0]["id"], *store) == {"deleted": [listed[0]["id"]]}
    assert "deleted" in run("rm", first["id"], *store).stdout
    report = run_json("gc", *store, "--grace", "0")
    assert report["packs_deleted"] >= 1 and report["snapshots"] == 1
    assert "deleted 0 packs" in run("gc", *store, "--grace", "0").stdout


def test_restore_verify_and_encryption(ws: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("correct horse battery staple\n")
    store = ["--store", str(tmp_path / "store"), "--key-file", str(key)]
    rec = run_json("create", str(ws), *store)
    out = tmp_path / "out"
    stats = run_json("restore", rec["id"], str(out), *store)
    assert stats["files_written"] == stats["files"] == 6
    assert tree_state(out) == tree_state(ws)
    # non-empty target: refused, then replaced writing nothing that is already there
    err = run("restore", rec["id"], str(out), *store, code=2).output
    assert err.startswith("error:") and "not empty" in err and err.count("\n") == 1
    again = run_json("restore", rec["id"], str(out), *store, "--replace")
    assert again["files_written"] == 0 and again["unchanged"] == 6 + 2
    assert "unchanged" in run("restore", rec["id"], str(out), *store, "--replace").stdout
    # the key from the environment works too; a wrong key is one clear error
    env_run = run(
        "ls",
        "--store",
        str(tmp_path / "store"),
        "--json",
        env={"SANDBANK_STORE_KEY": "correct horse battery staple"},
    )
    assert json.loads(env_run.stdout)[0]["id"] == rec["id"]
    key.write_text("wrong")
    assert "encryption key does not open" in run("ls", *store, code=2).output
    key.write_text("correct horse battery staple")

    report = run_json("verify", *store)
    assert report["ok"] and report["snapshots"] == 1 and report["problems"] == []
    assert run("verify", rec["id"], *store).stdout.startswith("ok:")
    # corrupt a pack: verify names it and the snapshot, and exits 1
    pack = next((tmp_path / "store" / "packs").iterdir())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    broken = run_json("verify", *store, code=1)
    assert not broken["ok"] and broken["problems"][0]["snapshots"] == [rec["id"]]
    assert "PROBLEMS" in run("verify", *store, code=1).stdout
    make_writable(tmp_path)


def test_errors_are_one_line(tmp_path: Path) -> None:
    missing = run("ls", "--store", str(tmp_path / "nowhere"), code=2).output
    assert missing.startswith("error:") and "no snapshot store" in missing
    run("create", str(tmp_path), "--store", str(tmp_path / "s"), "-o", "novalue", code=2)
    usage = run("create", "--store", str(tmp_path / "s"), code=2).output
    assert "--provider NAME --sandbox ID" in usage
    (tmp_path / "d").mkdir()
    run_json("create", str(tmp_path / "d"), "--store", str(tmp_path / "s"))
    gone = run("show", "0123456789abcdef", "--store", str(tmp_path / "s"), code=2).output
    assert "no such snapshot" in gone


def test_sandbox_source_and_target(ws: Path, tmp_path: Path, bwrap: str) -> None:
    from sandbank.providers.local import LocalProvider

    state = tmp_path / "state"

    async def make() -> str:
        provider = LocalProvider(state_dir=state, bwrap=bwrap)
        async with provider:
            box = await provider.create()
            await box.aclose()
            return box.id

    box_id = asyncio.run(make())
    store = ["--store", str(tmp_path / "store")]
    sandbox = [
        "--provider",
        "local",
        "--sandbox",
        box_id,
        "-P",
        f"state_dir={json.dumps(str(state))}",
    ]
    rec = run_json("create", str(ws), *store)
    stats = run_json("restore", rec["id"], *sandbox, *store)
    assert stats["files_written"] == 6
    back = run_json("create", *sandbox, *store, "--parent", rec["id"])
    assert back["source"]["provider"] == "local" and back["source"]["sandbox_id"] == box_id
    assert back["stats"]["read_bytes"] == 0 and back["tree"] == rec["tree"]
    run("create", str(ws), *sandbox, *store, code=2)  # both a directory and a sandbox
    make_writable(tmp_path)


def test_verify_repair_and_tables_in_a_narrow_terminal(ws: Path, tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "store")]
    rec = run_json("create", str(ws), *store)
    listed = narrow("ls", *store)
    rows = listed.split("─", 1)[1].splitlines()[1:]  # under the header rule
    assert "".join(line.split()[0] for line in rows if line[:2].strip()) == rec["id"]
    start = rows[0].index(str(ws)[:4])  # the source column, the last one
    assert "".join(line[start:].strip() for line in rows) == str(ws)
    assert in_order(rec["id"], narrow("show", rec["id"], *store))

    (pack,) = os.listdir(tmp_path / "store" / "packs")
    os.unlink(tmp_path / "store" / "index" / pack)
    gc = run("gc", *store, "--grace", "0", code=2).output  # it cannot read the snapshot's tree
    assert gc.startswith("error:") and "verify" in gc
    assert os.listdir(tmp_path / "store" / "packs") == [pack]
    text = narrow("verify", *store, code=1)
    cells = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    assert "".join(c[0].strip() for c in cells) == f"index/{pack}"
    assert "".join(c[2].strip() for c in cells) == rec["id"]
    assert "1 of these can be repaired: run `sandbank snapshot verify --repair`" in text
    problem = run_json("verify", *store, code=1)["problems"][0]
    assert problem["object"] == f"index/{pack}" and problem["repairable"]

    repaired = run_json("verify", "--repair", *store)
    assert repaired["ok"] and [p["object"] for p in repaired["repaired"]] == [f"index/{pack}"]
    assert narrow("verify", "--repair", *store).startswith("ok:")
    out = tmp_path / "out"
    run_json("restore", rec["id"], str(out), *store)
    assert tree_state(out) == tree_state(ws)
    make_writable(tmp_path)
