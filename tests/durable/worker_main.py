"""A sandbank worker as its own OS process, for the fault tests (so SIGKILL is real).

    python -m tests.durable.worker_main --address HOST:PORT --task-queue Q --store URL \
        [--state-dir DIR] [--docker-image IMAGE] [--identity NAME] [--ready FILE] \
        [--agents MODULE]

It holds a local provider (``--state-dir``) and/or a docker provider (``--docker-image``)
and a snapshot store, writes ``--ready`` once it polls, and shuts down on SIGTERM. A lost
connection to Temporal is retried by the client; the process never exits by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from sandbank.durable.activities import SandboxActivities
from sandbank.durable.worker import build_worker


async def _connect(address: str, namespace: str) -> Client:
    for _ in range(100):
        try:
            return await Client.connect(address, namespace=namespace)
        except RuntimeError:
            await asyncio.sleep(0.2)
    return await Client.connect(address, namespace=namespace)


async def main(args: argparse.Namespace) -> None:
    from sandbank.snapshots import SnapshotStore

    if args.agents:  # a module that registers agents on import
        importlib.import_module(args.agents)
    providers: dict[str, Any] = {}
    if args.state_dir:
        from sandbank.providers.local import LocalProvider

        providers["local"] = LocalProvider(state_dir=args.state_dir)
    if args.docker_image:
        from sandbank.providers.docker import DockerProvider

        providers["docker"] = DockerProvider(image=args.docker_image)
    store = await SnapshotStore.open(args.store, cache_dir=False)
    acts = SandboxActivities(providers, store)
    client = await _connect(args.address, args.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        async with build_worker(
            client,
            acts,
            task_queue=args.task_queue,
            identity=args.identity,
            disable_eager_activity_execution=args.no_eager,
        ):
            logging.info(
                "worker %s polling %s (pid %d)", args.identity, args.task_queue, os.getpid()
            )
            if args.ready:
                await asyncio.to_thread(Path(args.ready).write_text, str(os.getpid()))
            await stop.wait()
    finally:
        await acts.aclose()
        await store.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.durable.worker_main")
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--state-dir")
    p.add_argument("--docker-image")
    p.add_argument("--identity", default=f"worker-{os.getpid()}")
    p.add_argument("--ready")
    p.add_argument("--agents", help="import this module first (it registers agents)")
    p.add_argument("--no-eager", action="store_true", help="no eager activity dispatch")
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    asyncio.run(main(parse()))
