"""Latency of sandbank's providers against the raw tools they wrap, side by side in one run.

    python bench/exec_latency.py [--provider docker|local|all] [--rounds N] [--json]

Measures p50/p95 of create+destroy, ``exec(["true"])`` and a 10 MiB write+read, through
sandbank and through the raw baseline (docker SDK: ``containers.run``/``remove(force=True)``,
``exec_run``, ``put_archive``/``get_archive``; local: a raw ``bwrap`` subprocess and plain
file I/O on the workspace directory). Prints ratios; with ``--json`` the last line is one
JSON object with every figure and a ``targets`` map (measured, limit, met).

Targets: create+destroy p50 <= 1.2x raw; exec p50 <= 1.2x raw; file transfer <= 1.5x raw.
This is a benchmark, not a test: the machine is shared and noisy, so read ratios, not seconds.
Needs ``pip install -e '.[bench]'`` and ``apt-get install -y bubblewrap``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _anchors import require

require("bench/exec_latency.py", packages={"docker": ""}, programs={"bwrap": "bubblewrap"})

from sandbank import Manifest, get_provider  # noqa: E402

TEN_MIB = os.urandom(10 * 1024 * 1024)
TARGETS = {"create_destroy": 1.2, "exec": 1.2, "file_transfer": 1.5}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


Work = Callable[[], Awaitable[Any]]


async def measure_pair(rounds: int, ours: Work, raw: Work) -> tuple[dict[str, float], ...]:
    """Alternate the two, so the machine's noise lands on both alike."""
    samples: tuple[list[float], list[float]] = ([], [])
    await ours()
    await raw()  # warm-up
    for i in range(rounds):
        order = ((0, ours), (1, raw)) if i % 2 == 0 else ((1, raw), (0, ours))
        for slot, work in order:
            start = time.perf_counter()
            await work()
            samples[slot].append(time.perf_counter() - start)
    return tuple({"p50": statistics.median(s), "p95": percentile(s, 0.95)} for s in samples)


@asynccontextmanager
async def sandbank_ops(name: str, options: dict[str, Any]) -> AsyncIterator[dict[str, Work]]:
    provider = get_provider(name, **options)
    manifest = Manifest()

    async def create_destroy() -> None:
        box = await provider.create(manifest)
        await box.destroy()

    box = await provider.create(manifest)

    async def transfer() -> None:
        await box.write_file("blob.bin", TEN_MIB)
        assert len(await box.read_file("blob.bin")) == len(TEN_MIB)

    try:
        yield {
            "create_destroy": create_destroy,
            "exec": lambda: box.exec(["true"]),
            "file_transfer": transfer,
        }
    finally:
        await box.destroy()
        await provider.aclose()


@asynccontextmanager
async def raw_docker_ops(image: str) -> AsyncIterator[dict[str, Work]]:
    import docker

    client = docker.from_env()
    run = {"command": ["sleep", "infinity"], "detach": True, "network_mode": "none"}

    def create_destroy() -> None:
        client.containers.run(image, working_dir="/workspace", **run).remove(force=True)

    container = client.containers.run(image, working_dir="/workspace", **run)

    def transfer() -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("blob.bin")
            info.size = len(TEN_MIB)
            tar.addfile(info, io.BytesIO(TEN_MIB))
        container.put_archive("/workspace", buffer.getvalue())
        stream, _ = container.get_archive("/workspace/blob.bin")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("blob.bin")
            assert member is not None and len(member.read()) == len(TEN_MIB)

    try:
        yield {
            "create_destroy": lambda: asyncio.to_thread(create_destroy),
            "exec": lambda: asyncio.to_thread(container.exec_run, ["true"]),
            "file_transfer": lambda: asyncio.to_thread(transfer),
        }
    finally:
        container.remove(force=True)
        client.close()


@asynccontextmanager
async def raw_local_ops() -> AsyncIterator[dict[str, Work]]:
    from sandbank.providers.local import bwrap_argv

    root = Path(tempfile.mkdtemp(prefix="sandbank-bench-"))

    async def create_destroy() -> None:
        workspace = root / "ws"
        workspace.mkdir()
        shutil.rmtree(workspace)

    workspace = root / "live"
    workspace.mkdir()
    argv = bwrap_argv(["true"], workspace=str(workspace), env={"PATH": "/usr/bin:/bin"})

    async def run_true() -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        await proc.communicate()

    def transfer() -> None:
        (workspace / "blob.bin").write_bytes(TEN_MIB)
        assert len((workspace / "blob.bin").read_bytes()) == len(TEN_MIB)

    try:
        yield {
            "create_destroy": create_destroy,
            "exec": run_true,
            "file_transfer": lambda: asyncio.to_thread(transfer),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=["docker", "local", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--image", default=os.environ.get("SANDBANK_TEST_IMAGE", "sandbank-test:bookworm")
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    args = parser.parse_args()

    report: dict[str, Any] = {"rounds": args.rounds, "providers": {}, "targets": {}}
    names = ["local", "docker"] if args.provider == "all" else [args.provider]
    for name in names:
        state = tempfile.mkdtemp(prefix="sandbank-bench-state-")
        options = {"image": args.image} if name == "docker" else {"state_dir": state}
        raw_side = raw_docker_ops(args.image) if name == "docker" else raw_local_ops()
        ours: dict[str, Any] = {}
        raw: dict[str, Any] = {}
        async with sandbank_ops(name, options) as our_ops, raw_side as raw_ops:
            for op in TARGETS:
                rounds = args.rounds * 2 if op == "exec" else args.rounds
                ours[op], raw[op] = await measure_pair(rounds, our_ops[op], raw_ops[op])
        shutil.rmtree(state, ignore_errors=True)
        report["providers"][name] = {"sandbank": ours, "raw": raw}
        print(f"\n{name}: sandbank vs raw (ms, p50 / p95)")
        for op, limit in TARGETS.items():
            ratio = ours[op]["p50"] / raw[op]["p50"]
            print(
                f"  {op:15s} {ours[op]['p50'] * 1e3:8.2f} / {ours[op]['p95'] * 1e3:8.2f}   "
                f"raw {raw[op]['p50'] * 1e3:8.2f} / {raw[op]['p95'] * 1e3:8.2f}   "
                f"ratio {ratio:5.2f}x (target <= {limit}x)"
            )
            report["targets"][f"{name}.{op}_p50_ratio"] = {
                "measured": round(ratio, 3),
                "limit": limit,
                "met": ratio <= limit,
            }
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
