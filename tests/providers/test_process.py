"""run_process, the host-process runner behind local's and the template's exec."""

# These tests look at the host file system directly, on purpose.
# ruff: noqa: ASYNC110, ASYNC240

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from sandbank.errors import ExecTimeout
from sandbank.providers import ExecRequest, OutputCollector, ProcessGroups, run_process, sandbox_env


def _request(argv: list[str], **kwargs: object) -> ExecRequest:
    fields: dict[str, object] = {"cwd": ".", "env": {}, "stdin": None, "timeout": None}
    fields.update(kwargs)
    return ExecRequest(argv=argv, **fields)  # type: ignore[arg-type]


async def test_missing_and_unexecutable_programs(tmp_path: Path) -> None:
    result = await run_process(["sandbank-no-such-prog"], _request([]), OutputCollector())
    assert result.exit_code == 127 and b"sandbank-no-such-prog" in result.stderr
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    result = await run_process([str(script)], _request([]), OutputCollector())
    assert result.exit_code == 126 and str(script).encode() in result.stderr


async def test_stdin_env_cwd_and_signals(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", 'cat; printf "%s|%s|" "$A" "${HOME}"; pwd; kill -TERM $$']
    result = await run_process(
        argv,
        _request(argv, stdin=b"in|"),
        OutputCollector(),
        cwd=str(tmp_path),
        env=sandbox_env({"A": "1"}, home="/h"),
    )
    assert result.stdout.decode() == f"in|1|/h|{os.path.realpath(tmp_path)}\n"
    assert result.exit_code == 128 + 15


async def test_timeout_kills_the_group_and_keeps_partial_output(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    argv = ["/bin/sh", "-c", f"echo early; (sleep 1.5; touch {marker}) & wait"]
    groups = ProcessGroups()
    started = time.monotonic()
    with pytest.raises(ExecTimeout) as caught:
        await run_process(
            argv, _request(argv, timeout=0.5), OutputCollector(), running=groups.of("s")
        )
    assert time.monotonic() - started < 1.4
    assert (caught.value.result.exit_code, caught.value.result.stdout) == (137, b"early\n")
    assert groups.of("s") == set()
    await asyncio.sleep(1.5)
    assert not marker.exists(), "a child outlived the timeout"


async def test_process_groups_kill_running_commands() -> None:
    groups = ProcessGroups()
    argv = ["/bin/sh", "-c", "sleep 30"]
    task = asyncio.ensure_future(
        run_process(argv, _request(argv), OutputCollector(), running=groups.of("s"))
    )
    while not groups.of("s"):
        await asyncio.sleep(0.01)
    groups.kill("s")
    result = await asyncio.wait_for(task, 10)
    assert result.exit_code == 137
