"""sandbank's side of ``bench/agents.py``: durable agent sessions on the local provider.

    python bench/_sandbank_agents.py worker --address A --task-queue Q --identity NAME \
        --store URL --data-dir DIR

``worker``: ``build_worker(..., agents={"bench": factory})`` with the local provider's
sandboxes and the store's cache in ``DIR`` (its own data directory), checkpoints in the
shared store (a file:// directory standing in for an object store). The agent is a
``SandboxAgent`` with the default sandbox tools on the bench's scripted model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # bench/agents.py would hide the SDK's ``agents`` package: this folder goes last.
    _BENCH = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

AGENT = "bench"
READY = "sandbank bench worker on task queue"


def factory(ctx: Any) -> Any:
    """The same agent as the anchor's, on the bench's scripted model."""
    from _agent_script import BenchModel
    from agents.sandbox import SandboxAgent

    return SandboxAgent(
        name=ctx.name, instructions="You edit files and run commands.", model=BenchModel()
    )


async def worker(args: argparse.Namespace) -> None:
    from temporalio.client import Client

    from sandbank.durable.activities import SandboxActivities
    from sandbank.durable.worker import build_worker
    from sandbank.providers.local import LocalProvider
    from sandbank.snapshots import SnapshotStore

    data = Path(args.data_dir)
    store = await SnapshotStore.open(args.store, cache_dir=data / "cache")
    acts = SandboxActivities({"local": LocalProvider(state_dir=data / "local")}, store)
    client = await Client.connect(args.address)
    try:
        async with build_worker(
            client, acts, task_queue=args.task_queue, agents={AGENT: factory},
            identity=args.identity,
        ):  # fmt: skip
            print(f"{READY} {args.task_queue}", flush=True)
            await asyncio.Event().wait()
    finally:
        await acts.aclose()
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    for flag in ("--address", "--task-queue", "--identity", "--store", "--data-dir"):
        w.add_argument(flag, required=True)
    asyncio.run(worker(parser.parse_args()))


if __name__ == "__main__":
    main()
