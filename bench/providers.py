"""sandbank's overhead over each cloud SDK, measured against that cloud's emulator.

    python bench/providers.py [--provider NAME|all] [--rounds N] [--json]   # NAME: see CLOUDS

For each cloud provider: create+destroy, ``exec(["true"])`` and a 10 MiB write+read through
sandbank, against the same operations through the raw SDK calls, both talking to the
provider's emulator on 127.0.0.1 (a fake of the service, backed by local sandboxes). The
figures are sandbank's overhead over the SDK, not the cloud's speed. With ``--json`` the last
line is one JSON object with a ``targets`` map keyed ``<provider>.<op>_p50_ratio``.

Targets: create+destroy and exec p50 <= 1.2x raw; file transfer <= 1.5x raw. With
``--snapshots`` it also restores the standard workspace (``../shared/bench/workspace.py``,
``--profile``) from a snapshot store into a sandbox and snapshots it back (report only).
To add a provider: write its ``raw_<name>`` ops and its emulator context, add a ``Cloud``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _anchors import require
from exec_latency import TARGETS, TEN_MIB, Work, measure_pair, sandbank_ops

NOTE = "sandbank's overhead over the raw SDK, both against a local emulator: not the cloud"


@dataclass(frozen=True)
class Cloud:
    """How to benchmark one cloud provider."""

    package: str
    """The SDK distribution (checked before the run)."""
    emulator: Callable[[Path], AbstractContextManager[dict[str, str]]]
    """Starts the emulator under a directory; yields the environment that points the SDK at it."""
    raw: Callable[[], AbstractAsyncContextManager[dict[str, Work]]]
    """The same three operations through the raw SDK."""


# -- e2b ------------------------------------------------------------------------------------


@contextlib.contextmanager
def e2b_emulator(root: Path) -> Iterator[dict[str, str]]:
    from sandbank.testing.emulators.e2b import environment, start_e2b_emulator

    server, emulator = start_e2b_emulator(root)
    try:
        yield environment(server, emulator)
    finally:
        server.stop(emulator.engine.aclose)


@contextlib.asynccontextmanager
async def raw_e2b() -> AsyncIterator[dict[str, Work]]:
    from e2b import AsyncSandbox

    options: dict[str, Any] = {"template": "base", "allow_internet_access": False}

    async def create_destroy() -> None:
        sandbox = await AsyncSandbox.create(**options)
        await sandbox.kill()

    sandbox = await AsyncSandbox.create(**options)

    async def transfer() -> None:
        await sandbox.files.write("/home/user/blob.bin", TEN_MIB, use_octet_stream=True)
        data = await sandbox.files.read("/home/user/blob.bin", format="bytes")
        assert len(data) == len(TEN_MIB)

    try:
        yield {
            "create_destroy": create_destroy,
            "exec": lambda: sandbox.commands.run("true"),
            "file_transfer": transfer,
        }
    finally:
        await sandbox.kill()


# -- daytona --------------------------------------------------------------------------------


@contextlib.contextmanager
def daytona_emulator(root: Path) -> Iterator[dict[str, str]]:
    from sandbank.testing.emulators.daytona import serve_daytona

    with serve_daytona(root) as emulator:
        yield {"DAYTONA_API_URL": emulator.api_url, "DAYTONA_API_KEY": emulator.api_key}


@contextlib.asynccontextmanager
async def raw_daytona() -> AsyncIterator[dict[str, Work]]:
    from daytona import AsyncDaytona, CreateSandboxFromSnapshotParams, DaytonaConfig

    config = DaytonaConfig(
        api_key=os.environ["DAYTONA_API_KEY"], api_url=os.environ["DAYTONA_API_URL"]
    )
    params = CreateSandboxFromSnapshotParams(network_block_all=True)
    async with AsyncDaytona(config) as client:

        async def create_destroy() -> None:
            await (await client.create(params)).delete()

        sandbox = await client.create(params)

        async def transfer() -> None:
            await sandbox.fs.upload_file(TEN_MIB, "/home/daytona/workspace/blob.bin")
            assert len(await sandbox.fs.download_file("/home/daytona/workspace/blob.bin")) == len(
                TEN_MIB
            )

        try:
            yield {
                "create_destroy": create_destroy,
                "exec": lambda: sandbox.process.exec("true"),
                "file_transfer": transfer,
            }
        finally:
            await sandbox.delete()


# -- modal ----------------------------------------------------------------------------------


@contextlib.contextmanager
def modal_emulator(root: Path) -> Iterator[dict[str, str]]:
    from sandbank.testing.emulators.modal import ModalEmulator

    with ModalEmulator(str(root)) as emulator:
        yield emulator.environment()


@contextlib.asynccontextmanager
async def raw_modal() -> AsyncIterator[dict[str, Work]]:
    """The raw SDK's files are commands too (``filesystem`` runs Modal's fs-tools binary,
    which the emulator does not have), so the raw transfer is ``cat`` over exec, as ours."""
    import modal

    client = await modal.Client.from_credentials.aio(
        os.environ["MODAL_TOKEN_ID"], os.environ["MODAL_TOKEN_SECRET"]
    )
    app = await modal.App.lookup.aio("sandbank-bench-raw", create_if_missing=True, client=client)
    image = modal.Image.from_registry("debian:bookworm-slim")
    options: dict[str, Any] = {
        "app": app,
        "image": image,
        "client": client,
        "block_network": True,
        "workdir": "/workspace",
    }

    async def create_destroy() -> None:
        sb = await modal.Sandbox.create.aio("sleep", "infinity", **options)
        await sb.terminate.aio()

    async def run(*argv: str, stdin: bytes | None = None) -> bytes:
        proc = await sb.exec.aio(*argv, text=False)
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.write_eof()
        await proc.stdin.drain.aio()
        # both streams, as sandbank returns both
        out, _ = await asyncio.gather(proc.stdout.read.aio(), proc.stderr.read.aio())
        await proc.wait.aio()
        return bytes(out)

    async def transfer() -> None:
        await run("sh", "-c", "cat > /workspace/blob.bin", stdin=TEN_MIB)
        assert len(await run("cat", "/workspace/blob.bin")) == len(TEN_MIB)

    sb = await modal.Sandbox.create.aio("sleep", "infinity", **options)
    try:
        yield {
            "create_destroy": create_destroy,
            "exec": lambda: run("true"),
            "file_transfer": transfer,
        }
    finally:
        await sb.terminate.aio()
        await client.close.aio()


# -- runloop --------------------------------------------------------------------------------


@contextlib.contextmanager
def runloop_emulator(root: Path) -> Iterator[dict[str, str]]:
    from sandbank.testing.emulators.runloop import serve_runloop

    with serve_runloop(root) as emulator:
        yield {"RUNLOOP_BASE_URL": emulator.url, "RUNLOOP_API_KEY": emulator.api_key}


@contextlib.asynccontextmanager
async def raw_runloop() -> AsyncIterator[dict[str, Work]]:
    from runloop_api_client import AsyncRunloop

    async with AsyncRunloop(
        bearer_token=os.environ["RUNLOOP_API_KEY"], base_url=os.environ["RUNLOOP_BASE_URL"]
    ) as client:
        devboxes = client.devboxes
        policy = await client.network_policies.create(name="bench-offline", allow_all=False)
        launch: Any = {"network_policy_id": policy.id}

        async def create_destroy() -> None:
            await devboxes.shutdown((await devboxes.create(launch_parameters=launch)).id)

        box = await devboxes.create(launch_parameters=launch)
        path = "/home/user/workspace/blob.bin"

        async def transfer() -> None:
            await devboxes.upload_file(box.id, path=path, file=TEN_MIB)
            response = await devboxes.download_file(box.id, path=path)
            assert len(await response.read()) == len(TEN_MIB)

        try:
            yield {
                "create_destroy": create_destroy,
                "exec": lambda: devboxes.execute(box.id, command="true"),
                "file_transfer": transfer,
            }
        finally:
            await devboxes.shutdown(box.id)


# -- vercel ---------------------------------------------------------------------------------


@contextlib.contextmanager
def vercel_emulator(root: Path) -> Iterator[dict[str, str]]:
    from sandbank.testing.emulators import vercel

    with vercel.serve_vercel(root) as emulator:
        yield vercel.environment(emulator)


@contextlib.asynccontextmanager
async def raw_vercel() -> AsyncIterator[dict[str, Work]]:
    from vercel.sandbox import (
        NetworkPolicy,
        SandboxClient,
        SandboxCredentials,
        SandboxServiceOptions,
    )

    credentials = SandboxCredentials(
        token=os.environ["VERCEL_TOKEN"],
        team_id=os.environ["VERCEL_TEAM_ID"],
        project_id=os.environ["VERCEL_PROJECT_ID"],
    )

    async def factory() -> SandboxCredentials:
        return credentials

    options = SandboxServiceOptions(
        base_url=os.environ["SANDBANK_VERCEL_API_URL"], credentials_factory=factory
    )
    client = SandboxClient.create(options=options)
    deny = NetworkPolicy.deny_all()

    async def create_destroy() -> None:
        await (await client.create_sandbox(network_policy=deny)).destroy()

    sb = await client.create_sandbox(network_policy=deny)

    async def transfer() -> None:
        await sb.fs.write_bytes("/vercel/sandbox/blob.bin", TEN_MIB)
        assert len(await sb.fs.read_bytes("/vercel/sandbox/blob.bin")) == len(TEN_MIB)

    try:
        yield {
            "create_destroy": create_destroy,
            "exec": lambda: sb.run_process("true", capture_output=True),
            "file_transfer": transfer,
        }
    finally:
        await sb.destroy()
        await client.aclose()


CLOUDS = {
    "e2b": Cloud(package="e2b", emulator=e2b_emulator, raw=raw_e2b),
    "daytona": Cloud(package="daytona", emulator=daytona_emulator, raw=raw_daytona),
    "modal": Cloud(package="modal", emulator=modal_emulator, raw=raw_modal),
    "runloop": Cloud(package="runloop_api_client", emulator=runloop_emulator, raw=raw_runloop),
    "vercel": Cloud(package="vercel-sandbox", emulator=vercel_emulator, raw=raw_vercel),
}


async def snapshot_round_trip(name: str, workspace: Path, root: Path) -> dict[str, float]:
    """Seconds to restore ``workspace`` from a store into a sandbox, and to snapshot it back."""
    from sandbank import get_provider
    from sandbank.snapshots import SnapshotStore

    store = await SnapshotStore.open(f"file://{root}/store", cache_dir=False)
    provider = get_provider(name)
    try:
        record = await store.snapshot(workspace)
        async with provider.sandbox() as box:
            started = time.perf_counter()
            await store.restore(record.id, box)
            restored = time.perf_counter() - started
            started = time.perf_counter()
            await store.snapshot(box)
            snapshotted = time.perf_counter() - started
    finally:
        await store.aclose()
        await provider.aclose()
    print(f"  snapshot round trip: restore {restored:.2f}s, snapshot {snapshotted:.2f}s")
    return {"restore_s": round(restored, 3), "snapshot_s": round(snapshotted, 3)}


def make_workspace(profile: str, into: Path) -> Path:
    tool = Path(__file__).resolve().parents[2] / "shared" / "bench" / "workspace.py"
    if not tool.exists():
        tool = Path("/work/shared/bench/workspace.py")
    target = into / f"ws-{profile}"
    command = [sys.executable, str(tool), "make", str(target), "--profile", profile]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return target


async def bench(
    name: str, cloud: Cloud, rounds: int, report: dict[str, Any], profile: str | None
) -> None:
    root = Path(tempfile.mkdtemp(prefix=f"sandbank-bench-{name}-"))
    try:
        with cloud.emulator(root / "emulator") as env:
            os.environ.update(env)
            ours: dict[str, Any] = {}
            raw: dict[str, Any] = {}
            async with sandbank_ops(name, {}) as our_ops, cloud.raw() as raw_ops:
                for op in TARGETS:
                    n = rounds * 2 if op == "exec" else rounds
                    ours[op], raw[op] = await measure_pair(n, our_ops[op], raw_ops[op])
            if profile is not None:
                workspace = make_workspace(profile, root)
                report.setdefault("snapshots", {})[name] = {
                    "profile": profile,
                    **await snapshot_round_trip(name, workspace, root),
                }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["providers"][name] = {"sandbank": ours, "raw": raw}
    print(f"\n{name}: sandbank vs the raw SDK, against its emulator (ms, p50 / p95)")
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=[*CLOUDS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--snapshots", action="store_true", help="also a snapshot round trip")
    parser.add_argument("--profile", default="medium", choices=["small", "medium", "large"])
    args = parser.parse_args()
    names = list(CLOUDS) if args.provider == "all" else [args.provider]
    require(
        "bench/providers.py",
        packages={CLOUDS[n].package: "" for n in names},
        programs={"bwrap": "bubblewrap"},
    )
    print(f"Measures {NOTE}.")
    report: dict[str, Any] = {"rounds": args.rounds, "note": NOTE, "providers": {}, "targets": {}}
    for name in names:
        profile = args.profile if args.snapshots else None
        await bench(name, CLOUDS[name], args.rounds, report, profile)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
