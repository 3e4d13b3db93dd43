"""`sandbank snapshot ...`: every subcommand, for people and with --json."""

from __future__ import annotations

import asyncio
import json
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
