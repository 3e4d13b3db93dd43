"""Secrets in durable sessions: the reference is in Temporal history, the value is not."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.errors import SecretUnavailable
from tests.leaks import files_containing, watch_command_lines

VALUE = f"sb-durable-secret-{uuid.uuid4().hex}"
MANIFEST = {"secrets": {"TOKEN": "env:SB_DURABLE_TOKEN", "MISSING": "env:SB_DURABLE_UNSET"}}


def _texts(node: Any, depth: int = 0) -> list[str]:
    """Every string in ``node``, and what it decodes to as base64 (payloads, *_b64 fields)."""
    found: list[str] = []
    if isinstance(node, dict):
        for value in node.values():
            found += _texts(value, depth)
    elif isinstance(node, list):
        for value in node:
            found += _texts(value, depth)
    elif isinstance(node, str):
        found.append(node)
        if depth < 4 and len(node) >= 4:
            try:
                decoded = base64.b64decode(node, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return found
            found.append(decoded)
            with contextlib.suppress(ValueError):
                found += _texts(json.loads(decoded), depth + 1)
    return found


async def test_history_holds_the_reference_never_the_value(
    client: Any, task_queue: str, local_provider: Any, store: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SB_DURABLE_TOKEN", VALUE)
    monkeypatch.delenv("SB_DURABLE_UNSET", raising=False)
    acts = SandboxActivities({"local": local_provider}, store)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local", MANIFEST, release_after=600)
        digest = hashlib.sha256(VALUE.encode()).hexdigest()
        turn = Turn(
            steps=[
                Step("exec", cmd='echo "$TOKEN"; echo "err $TOKEN" >&2', env={"MISSING": "x"}),
                Step("exec", cmd='printf %s "$TOKEN" | sha256sum', env={"MISSING": "x"}),
            ]
        )
        result = await mgr.send(sid, turn)
        assert result.error is None, result.error
        assert result.steps[0].stdout == "[secret TOKEN]\n"
        assert result.steps[0].stderr == "err [secret TOKEN]\n"
        assert result.steps[1].stdout.split()[0] == digest  # the command got the value
        # Neither the worker's state nor the exec records in the sandbox keep the value.
        assert list((tmp_path / "local-state").rglob("exec/*/out"))
        assert files_containing(tmp_path / "local-state", VALUE) == []
        # A long command through the detached supervisor: no command line holds the value.
        sleeping = asyncio.ensure_future(
            mgr.send(sid, Turn(steps=[Step("exec", cmd="sleep 3", env={"MISSING": "x"})]))
        )
        seen = await watch_command_lines(sleeping, [VALUE], b"sleep\x003")
        assert (await sleeping).error is None
        assert seen, "the command was never seen running; the scan proved nothing"
        failed = await mgr.send(sid, Turn(steps=[Step("exec", cmd="true")]))
        assert failed.error is not None and "secret 'MISSING'" in failed.error
        assert "SB_DURABLE_UNSET is not set" in failed.error
        await mgr.stop(sid)
        history = await client.get_workflow_handle(sid).fetch_history()
    texts = _texts(json.loads(history.to_json()))
    assert any("env:SB_DURABLE_TOKEN" in s for s in texts)  # the reference travels
    assert any("[secret TOKEN]" in s for s in texts)  # decoded exec results were searched
    assert [s for s in texts if VALUE in s] == []
    assert SecretUnavailable.__name__ in json.dumps(texts)  # the error kept its type
