"""An unavailable provider fails fast and says where and what to do; the session keeps its
sandbox. Real Temporal, a real local sandbox, a docker provider aimed at a dead socket."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.errors import ProviderUnavailable
from sandbank.providers.docker import DockerProvider


@pytest.mark.parametrize("budget", [None, 3.0])
async def test_migration_to_an_engine_that_is_down_fails_fast(
    client, task_queue, local_provider, store, tmp_path: Path, budget: float | None
):
    engine = f"unix://{tmp_path}/no-engine.sock"  # nothing listens here
    providers = {"local": local_provider, "docker": DockerProvider(base_url=engine)}
    options = {} if budget is None else {"unavailable_timeout": budget}
    acts = SandboxActivities(providers, store, **options)
    mgr = SessionManager(client, task_queue)
    async with build_worker(client, acts, task_queue=task_queue):
        sid = await mgr.start("local")
        r = await mgr.send(sid, Turn(steps=[Step("exec", cmd="echo kept > k.txt")]))
        assert r.error is None, r
        box = (await mgr.describe(sid)).sandbox_id

        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            await mgr.migrate(sid, "docker")
        waited = time.monotonic() - started
        assert waited <= (budget or 10.0) + 1.0, f"the caller waited {waited:.1f}s"
        err = caught.value
        assert err.provider == "docker" and err.address == engine
        assert "'docker'" in str(err) and engine in str(err)
        assert "start the Docker engine" in str(err) and "gave up after" in str(err)

        # The session never left its sandbox and answers at once.
        started = time.monotonic()
        r = await mgr.send(sid, Turn(steps=[Step("exec", cmd="cat k.txt")]))
        assert r.steps[0].stdout == "kept\n" and time.monotonic() - started < 5
        info = await mgr.describe(sid)
        assert info.provider == "local" and info.sandbox_id == box and not info.migrating
        await mgr.stop(sid)
