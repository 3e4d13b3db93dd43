"""Latency of sandbank's providers against the raw tools they wrap, side by side in one run.

    python bench/exec_latency.py [--provider docker|local|all] [--rounds N] [--json]

Measures p50/p95 of create+destroy, ``exec(["true"])`` and a 10 MiB write+read, through
sandbank and through the raw baseline (docker SDK: ``containers.run``/``remove(force=True)``,
``exec_run``, ``put_archive``/``get_archive``; local: a raw ``bwrap`` subprocess and plain
file I/O on the workspace directory). Prints ratios; with ``--json`` the last line is one
JSON object with every figure and a ``targets`` map (measured, limit, met).

Targets: create+destroy p50 <= 1.2x raw; exec p50 <= 1.2x raw; file transfer <= 1.5x raw.
This is a benchmark, not a test: the machine is shared and noisy, so read ratios, not seconds.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sandbank import Manifest, get_provider

TEN_MIB = os.urandom(10 * 1024 * 1024)
TARGETS = {"create_destroy": 1.2, "exec": 1.2, "file_transfer": 1.5}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(rounds: int, work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await work()  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - start)
    return {"p50": statistics.median(samples), "p95": percentile(samples, 0.95)}


async def bench_sandbank(name: str, options: dict[str, Any], rounds: int) -> dict[str, Any]:
    provider = get_provider(name, **options)
    manifest = Manifest()

    async def create_destroy() -> None:
        box = await provider.create(manifest)
        await box.destroy()

    figures: dict[str, Any] = {"create_destroy": await measure(rounds, create_destroy)}
    box = await provider.create(manifest)
    try:
        figures["exec"] = await measure(rounds * 2, lambda: box.exec(["true"]))

        async def transfer() -> None:
            await box.write_file("blob.bin", TEN_MIB)
            assert len(await box.read_file("blob.bin")) == len(TEN_MIB)

        figures["file_transfer"] = await measure(rounds, transfer)
    finally:
        await box.destroy()
        await provider.aclose()
    return figures


async def bench_raw_docker(image: str, rounds: int) -> dict[str, Any]:
    import docker

    client = docker.from_env()

    def create_destroy() -> None:
        container = client.containers.run(
            image, ["sleep", "infinity"], detach=True, network_mode="none", working_dir="/workspace"
        )
        container.remove(force=True)

    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, network_mode="none", working_dir="/workspace"
    )

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
        return {
            "create_destroy": await measure(rounds, lambda: asyncio.to_thread(create_destroy)),
            "exec": await measure(
                rounds * 2, lambda: asyncio.to_thread(container.exec_run, ["true"])
            ),
            "file_transfer": await measure(rounds, lambda: asyncio.to_thread(transfer)),
        }
    finally:
        container.remove(force=True)
        client.close()


async def bench_raw_local(rounds: int) -> dict[str, Any]:
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
        return {
            "create_destroy": await measure(rounds, create_destroy),
            "exec": await measure(rounds * 2, run_true),
            "file_transfer": await measure(rounds, lambda: asyncio.to_thread(transfer)),
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
        if name == "docker":
            raw = await bench_raw_docker(args.image, args.rounds)
            ours = await bench_sandbank("docker", {"image": args.image}, args.rounds)
        else:
            state = tempfile.mkdtemp(prefix="sandbank-bench-state-")
            raw = await bench_raw_local(args.rounds)
            ours = await bench_sandbank("local", {"state_dir": state}, args.rounds)
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
