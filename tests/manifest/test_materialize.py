"""create_sandbox: every source kind into real local and docker sandboxes, setup, the setup
cache, and bad input (a clear error, nothing left behind)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sandbank import ConfigurationError, Manifest, SetupFailed, SourceError, create_sandbox
from sandbank.manifest.materialize import CACHE_TAG, cache_key
from sandbank.providers.base import Provider, Sandbox
from sandbank.snapshots import SnapshotStore

from .conftest import git

BINARY = bytes(range(256)) * 64


async def modes(box: Sandbox) -> dict[str, int]:
    return {e.path: e.mode & 0o7777 for e in await box.list_tree()}


async def shell(box: Sandbox, script: str) -> str:
    result = await box.exec(script)
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


@pytest.fixture
def host_tree(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "data.bin").write_bytes(BINARY)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o750)
    (root / "sub").chmod(0o711)
    (root / "link").symlink_to("sub/deep/data.bin")
    (root / "single.txt").write_text("single host file\n")
    (root / "single.txt").chmod(0o600)
    return root


async def test_every_source_kind_byte_for_byte(
    provider: Provider,
    host_tree: Path,
    repo: dict[str, str],
    http_root: tuple[Path, str],
    tmp_path: Path,
) -> None:
    www, base_url = http_root
    (www / "page.bin").write_bytes(BINARY[::-1])
    (tmp_path / "objects" / "nested").mkdir(parents=True)
    (tmp_path / "objects" / "top.txt").write_text("top\n")
    (tmp_path / "objects" / "nested" / "n.bin").write_bytes(BINARY[:1000])
    manifest = {
        "dirs": [
            {"path": "vendor", "host": str(host_tree)},
            {"path": "repo", "git": {"url": repo["url"], "ref": "main"}},
            {"path": "objects", "url": f"file://{tmp_path}/objects"},
            {"path": "private", "mode": "0700"},
        ],
        "files": [
            {"path": "notes/a.txt", "text": "héllo\n"},
            {"path": "bin/blob", "base64": base64.b64encode(BINARY).decode(), "mode": "0755"},
            {"path": "cfg/single.txt", "host": str(host_tree / "single.txt")},
            {"path": "from-file-url.bin", "url": f"file://{host_tree}/sub/deep/data.bin"},
            {"path": "from-http.bin", "url": f"{base_url}/page.bin", "mode": 0o640},
        ],
    }
    box = await create_sandbox(provider, manifest)
    try:
        assert await box.read_file("notes/a.txt") == "héllo\n".encode()
        assert await box.read_file("bin/blob") == BINARY
        assert await box.read_file("cfg/single.txt") == b"single host file\n"
        assert await box.read_file("vendor/sub/deep/data.bin") == BINARY
        assert await box.read_file("vendor/run.sh") == b"#!/bin/sh\necho hi\n"
        assert await box.read_file("from-file-url.bin") == BINARY
        assert await box.read_file("from-http.bin") == BINARY[::-1]
        assert await box.read_file("objects/top.txt") == b"top\n"
        assert await box.read_file("objects/nested/n.bin") == BINARY[:1000]
        assert await box.read_file("repo/three.txt") == b"three\n"
        tree = {e.path: e for e in await box.list_tree()}
        assert tree["vendor/link"].type == "symlink"
        assert tree["vendor/link"].link_target == "sub/deep/data.bin"
        got = await modes(box)
        assert got["notes/a.txt"] == 0o644 and got["bin/blob"] == 0o755
        assert got["cfg/single.txt"] == 0o600  # the host file's own mode
        assert got["vendor/run.sh"] == 0o750 and got["vendor/sub"] == 0o711
        assert got["from-http.bin"] == 0o640 and got["private"] == 0o700
        assert got["repo"] == 0o755 and got["repo/run.sh"] == 0o755
        assert (await shell(box, "./vendor/run.sh")) == "hi\n"
        # the checkout is a repository: on the branch, with one commit (depth 1), no network
        assert (await shell(box, "cd repo && git rev-parse HEAD")).strip() == repo["three"]
        assert (await shell(box, "cd repo && git branch --show-current")).strip() == "main"
        assert (await shell(box, "cd repo && git log --oneline | wc -l")).strip() == "1"
    finally:
        await box.destroy()


async def test_references_never_put_content_in_the_manifest(
    local: Provider, host_tree: Path, tmp_path: Path
) -> None:
    marker = "CONTENT-ONLY-ON-THE-WORKER"
    (host_tree / "secret.txt").write_text(marker)
    manifest = Manifest.parse(
        {
            "dirs": [{"path": "v", "host": str(host_tree)}],
            "files": [
                {"path": "a", "host": str(host_tree / "secret.txt")},
                {"path": "b", "url": f"file://{host_tree}/secret.txt"},
            ],
        }
    )
    for text in (manifest.to_json(), manifest.to_toml()):
        assert marker not in text
    box = await create_sandbox(local, manifest)
    try:
        assert await box.read_file("a") == marker.encode()
        state = tmp_path / "local-state"
        for path in state.rglob("*.json"):
            assert marker not in path.read_text()
        assert marker not in json.dumps(box.manifest.model_dump())
    finally:
        await box.destroy()


async def test_inline_content_stays_out_of_provider_records(
    provider: Provider, tmp_path: Path
) -> None:
    """Inline files and setup are applied once: the provider's records (local's state files,
    docker's labels) keep the manifest without them."""
    marker = "INLINE-CONTENT-ONLY-IN-THE-WORKSPACE"
    manifest = Manifest.parse(
        {"network": True, "files": [{"path": "a.txt", "text": marker}], "setup": [f"true {marker}"]}
    )
    box = await create_sandbox(provider, manifest)
    try:
        assert await box.read_file("a.txt") == marker.encode()
        for path in (tmp_path / "state").rglob("*.json"):
            assert marker not in path.read_text()
        if provider.name == "docker":
            labels = await asyncio.to_thread(_container_labels, box.id)
            assert labels and not any(marker in v for v in labels.values())
        reattached = await provider.attach(box.id)
        assert not reattached.manifest.files and not reattached.manifest.setup
        await reattached.aclose()
    finally:
        await box.destroy()


def _container_labels(container_id: str) -> dict[str, str]:
    import docker

    client = docker.from_env()
    try:
        return dict(client.containers.get(container_id).labels)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("git_spec", "head", "commits", "branch"),
    [
        ({"ref": "v1"}, "one", 1, ""),  # an annotated tag: its commit, detached
        ({"ref": "main", "depth": 2}, "three", 2, "main"),
        ({"depth": 0}, "three", 3, "main"),  # the remote's HEAD (on its branch), all history
        ({"ref": "two"}, "two", 1, ""),  # a full commit id (filled in below)
    ],
)
async def test_git_ref_and_depth(
    local: Provider,
    repo: dict[str, str],
    git_spec: dict[str, Any],
    head: str,
    commits: int,
    branch: str,
) -> None:
    spec = {"url": repo["url"], **git_spec}
    if spec.get("ref") == "two":
        spec["ref"] = repo["two"]
    box = await create_sandbox(local, {"dirs": [{"path": "r", "git": spec}]})
    try:
        assert (await shell(box, "git -C r rev-parse HEAD")).strip() == repo[head]
        assert (await shell(box, "git -C r log --oneline | wc -l")).strip() == str(commits)
        assert (await shell(box, "git -C r status --porcelain")) == ""
        assert (await shell(box, "git -C r branch --show-current")).strip() == branch
    finally:
        await box.destroy()


async def test_fsspec_url_on_the_s3_emulator(
    local: Provider, s3_service: Any, store: SnapshotStore
) -> None:
    import s3fs

    options = s3_service.storage_options()
    fs = s3fs.S3FileSystem(**options)
    prefix = f"{s3_service.bucket}/manifest-{os.urandom(4).hex()}"
    fs.pipe(f"{prefix}/one.bin", BINARY)
    fs.pipe(f"{prefix}/tree/a.txt", b"a\n")
    fs.pipe(f"{prefix}/tree/deeper/b.txt", b"b\n")
    manifest = {
        "files": [{"path": "one.bin", "url": f"s3://{prefix}/one.bin"}],
        "dirs": [{"path": "tree", "url": f"s3://{prefix}/tree"}],
        "setup": ["cat one.bin tree/a.txt tree/deeper/b.txt | wc -c | tee size"],
    }
    storage = {"s3": options}
    box = await create_sandbox(local, manifest, store=store, storage_options=storage)
    try:
        assert await box.read_file("one.bin") == BINARY
        assert await box.read_file("tree/deeper/b.txt") == b"b\n"
        assert (await box.read_file("size")).strip() == str(len(BINARY) + 4).encode()
    finally:
        await box.destroy()
    seen: list[bytes] = []
    box = await create_sandbox(
        local, manifest, store=store, storage_options=storage, on_output=lambda s, d: seen.append(d)
    )
    await box.destroy()
    assert seen == []  # unchanged objects (same ETags): the cached setup, nothing ran
    fs.pipe(f"{prefix}/tree/a.txt", b"changed\n")  # a new version (ETag): a cache miss
    box = await create_sandbox(
        local, manifest, store=store, storage_options=storage, on_output=lambda s, d: seen.append(d)
    )
    try:
        assert seen  # setup ran again
        assert await box.read_file("tree/a.txt") == b"changed\n"
        assert (await box.read_file("size")).strip() == str(len(BINARY) + 10).encode()
    finally:
        await box.destroy()
    with pytest.raises(SourceError, match=r"files\[0\]\.url: 's3://.*/missing' does not exist"):
        await create_sandbox(
            local,
            {"files": [{"path": "m", "url": f"s3://{prefix}/missing"}]},
            storage_options=storage,
        )
    assert await local.list() == []


async def test_a_large_host_file_streams(local: Provider, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    size = 64 * 1024 * 1024
    with big.open("wb") as out:
        for i in range(64):
            out.write(bytes([i]) * (1024 * 1024))
    tracemalloc.start()
    try:
        box = await create_sandbox(local, {"files": [{"path": "big.bin", "host": str(big)}]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert (await box.info()).id
        assert box.host_path is not None
        written = await asyncio.to_thread(os.path.getsize, f"{box.host_path}/big.bin")
        assert written == size
        assert peak < size // 4, f"peak Python memory {peak} for a {size}-byte file"
    finally:
        await box.destroy()


# -- setup -----------------------------------------------------------------------------------


async def test_setup_runs_once_in_order_with_visible_output(
    provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, bytes]] = []
    manifest = {
        "env": {"GREETING": "hello"},
        "workdir": "src",
        "setup": [
            "echo one >> ../order; echo $GREETING",
            ["/bin/sh", "-c", "echo two >> ../order; echo to-stderr >&2"],
            "echo three >> ../order; pwd",
        ],
    }
    with caplog.at_level(logging.INFO, logger="sandbank.manifest"):
        box = await create_sandbox(provider, manifest, on_output=lambda s, d: seen.append((s, d)))
    try:
        assert await box.read_file("order") == b"one\ntwo\nthree\n"
        out = b"".join(d for s, d in seen if s == "stdout").decode()
        assert out == f"hello\n{box.workspace}/src\n"
        assert (b"stderr", b"to-stderr\n") in [(s.encode(), d) for s, d in seen]
        assert "setup[1] stderr: to-stderr" in caplog.text
        assert "setup[0]: echo one" in caplog.text
    finally:
        await box.destroy()


async def test_a_failing_setup_fails_create_and_leaves_nothing(provider: Provider) -> None:
    manifest = {
        "setup": ["echo ok", "echo building; echo 'no compiler' >&2; exit 3", "touch never"]
    }
    with pytest.raises(SetupFailed) as caught:
        await create_sandbox(provider, manifest)
    error = caught.value
    assert (error.index, error.exit_code) == (1, 3)
    assert "exited with 3" in str(error) and "exit 3" in str(error)
    assert "building" in error.output and "no compiler" in error.output
    assert "no compiler" in str(error)
    assert await provider.list() == []


async def test_a_setup_timeout_fails_create(local: Provider) -> None:
    manifest = {"setup": [{"run": "echo started; sleep 60", "timeout": 1}]}
    with pytest.raises(SetupFailed, match=r"(?s)setup\[0\] .* timed out after 1s.*started"):
        await create_sandbox(local, manifest)
    assert await local.list() == []


# -- the setup cache -------------------------------------------------------------------------

COUNTED = {
    "files": [{"path": "src/main.c", "text": "int main(void) { return 0; }\n"}],
    "setup": ["echo setup-ran; head -c 16 /dev/urandom | od -An -x > token"],
}


async def create_counting(
    provider: Provider, manifest: dict[str, Any], store: SnapshotStore
) -> tuple[Sandbox, int]:
    runs: list[bytes] = []
    box = await create_sandbox(
        provider, manifest, store=store, on_output=lambda s, d: runs.append(d)
    )
    return box, sum(d.count(b"setup-ran") for d in runs)


def counted(**changes: Any) -> dict[str, Any]:
    return {**COUNTED, **changes}


async def test_a_second_create_restores_the_cached_setup(
    provider: Provider, store: SnapshotStore
) -> None:
    first, ran = await create_counting(provider, counted(), store)
    token = await first.read_file("token")
    await first.destroy()
    assert ran == 1
    second, ran = await create_counting(provider, counted(), store)
    try:
        assert ran == 0  # setup did not run again ...
        assert await second.read_file("token") == token  # ... its result was restored
        assert await second.read_file("src/main.c") == b"int main(void) { return 0; }\n"
    finally:
        await second.destroy()
    tagged = [r for r in await store.list() if any(t.startswith(CACHE_TAG) for t in r.tags)]
    assert len(tagged) == 1


async def test_the_cache_is_shared_by_providers_resolving_the_same_image(
    local: Provider, store: SnapshotStore, tmp_path: Path, bwrap: str
) -> None:
    from sandbank.providers.local import LocalProvider

    first, ran = await create_counting(local, counted(), store)
    await first.destroy()
    other = LocalProvider(state_dir=tmp_path / "other-state", bwrap=bwrap)
    second, ran = await create_counting(other, counted(), store)
    await second.destroy()
    assert ran == 0


@pytest.mark.parametrize(
    "change",
    [
        {"files": [{"path": "src/main.c", "text": "int main(void) { return 1; }\n"}]},
        {"setup": ["echo setup-ran; echo other > token"]},
        {"env": {"CC": "clang"}},
        {"workdir": "src"},
        {"dirs": [{"path": "extra"}]},
    ],
)
async def test_anything_in_the_key_changing_misses(
    local: Provider, store: SnapshotStore, change: dict[str, Any]
) -> None:
    first, ran = await create_counting(local, counted(), store)
    await first.destroy()
    second, ran = await create_counting(local, counted(**change), store)
    await second.destroy()
    assert ran == 1


async def test_a_host_file_is_keyed_by_its_content(
    local: Provider, store: SnapshotStore, tmp_path: Path
) -> None:
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    manifest = counted(files=[{"path": "src/main.c", "host": str(source)}])
    for expected_runs, content in [(1, None), (0, None), (1, "changed\n"), (0, None)]:
        if content is not None:
            source.write_text(content)
        box, ran = await create_counting(local, manifest, store)
        await box.destroy()
        assert ran == expected_runs


async def test_a_git_source_is_keyed_by_its_commit(
    local: Provider, store: SnapshotStore, repo: dict[str, str]
) -> None:
    manifest = counted(dirs=[{"path": "r", "git": {"url": repo["url"], "ref": "main"}}])
    box, ran = await create_counting(local, manifest, store)
    await box.destroy()
    assert ran == 1
    origin = Path(repo["url"].removeprefix("file://"))
    (origin / "four.txt").write_text("four\n")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "four")
    box, ran = await create_counting(local, manifest, store)
    try:
        assert ran == 1  # the branch moved: a new commit, a new key
        assert await box.read_file("r/four.txt") == b"four\n"
    finally:
        await box.destroy()


@pytest.mark.docker
async def test_another_image_misses(docker_image: str, store: SnapshotStore) -> None:
    from sandbank.providers.docker import DockerProvider

    labels = {"sandbank-test.run": os.urandom(6).hex()}
    runs = []
    for image in (docker_image, "sandbank-busybox:latest", docker_image):
        provider = DockerProvider(image=image, labels=labels)
        box, ran = await create_counting(provider, counted(), store)
        assert (await box.info()).image == image
        await box.destroy()
        runs.append(ran)
    assert runs == [1, 1, 0]


def test_the_key_covers_image_user_and_fingerprints() -> None:
    manifest = Manifest.parse(COUNTED)
    fp = [{"sha256": "a", "mode": 0o644}]
    base = cache_key(manifest, "img:1", fp)
    assert cache_key(manifest, "img:1", fp) == base
    assert cache_key(manifest, "img:2", fp) != base
    assert cache_key(manifest, None, fp) != base
    assert cache_key(manifest.merged(user="1000"), "img:1", fp) != base
    assert cache_key(manifest, "img:1", [{"sha256": "b", "mode": 0o644}]) != base
    assert cache_key(manifest, "img:1", [{"sha256": "a", "mode": 0o755}]) != base
    # what does not change the result of setup is not in the key
    assert cache_key(manifest.merged(network=True, exclude=["x/"]), "img:1", fp) == base


async def test_concurrent_creators_of_one_key_do_not_corrupt_the_cache(
    local: Provider, store: SnapshotStore
) -> None:
    """Both miss (each waits in its setup until the other got there), both cache a result;
    the store stays sound and the next creator restores one of the two."""
    both_in_setup = asyncio.Barrier(2)
    ran: list[int] = []

    async def create() -> Sandbox:
        async def on_output(stream: str, data: bytes) -> None:
            if b"setup-ran" in data:
                ran.append(1)
                await both_in_setup.wait()

        return await create_sandbox(local, counted(), store=store, on_output=on_output)

    made = await asyncio.wait_for(asyncio.gather(create(), create()), timeout=120)
    tokens = {await box.read_file("token") for box in made}
    for box in made:
        await box.destroy()
    assert len(ran) == 2 and len(tokens) == 2
    tagged = [r for r in await store.list() if any(t.startswith(CACHE_TAG) for t in r.tags)]
    assert len(tagged) == 2 and len({t for r in tagged for t in r.tags}) == 1
    assert (await store.verify()).ok
    third, runs = await create_counting(local, counted(), store)
    try:
        assert runs == 0 and await third.read_file("token") in tokens
    finally:
        await third.destroy()


async def test_an_unreadable_cache_entry_falls_back_to_running_setup(
    local: Provider, store: SnapshotStore
) -> None:
    first, _ = await create_counting(local, counted(), store)
    await first.destroy()
    store_dir = Path(store.url.removeprefix("file://"))
    for pack in (store_dir / "packs").rglob("*"):
        if pack.is_file():
            pack.unlink()
    second, ran = await create_counting(local, counted(), store)
    try:
        assert ran == 1
        assert await second.read_file("src/main.c") == b"int main(void) { return 0; }\n"
    finally:
        await second.destroy()


# -- bad input ---------------------------------------------------------------------------------


async def test_a_path_through_a_symlink_in_the_workspace_is_refused(
    provider: Provider, tmp_path: Path
) -> None:
    host = tmp_path / "linky"
    host.mkdir()
    (host / "out").symlink_to("/etc")
    manifest = {
        "dirs": [{"path": "vendor", "host": str(host)}],
        "files": [{"path": "vendor/out/passwd", "text": "owned\n"}],
    }
    with pytest.raises(SourceError, match=r"files\[0\]\.path: .*vendor/out/passwd"):
        await create_sandbox(provider, manifest)
    assert await provider.list() == []
    assert "owned" not in await asyncio.to_thread(Path("/etc/passwd").read_text)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"files": [{"path": "a", "host": "/nonexistent/sandbank/x"}]},
            r"files\[0\]\.host: '/nonexistent/sandbank/x' does not exist on this worker",
        ),
        (
            {"dirs": [{"path": "a", "host": "/etc/hostname"}]},
            r"dirs\[0\]\.host: '/etc/hostname' is not a directory",
        ),
        (
            {"files": [{"path": "a", "host": "/etc"}]},
            r"files\[0\]\.host: '/etc' is a directory; list it under dirs",
        ),
        (
            {"files": [{"path": "a", "url": "file:///nonexistent/sandbank/x"}]},
            r"files\[0\]\.url: 'file:///nonexistent/sandbank/x' does not exist",
        ),
        (
            {"files": [{"path": "a", "url": "http://127.0.0.1:9/x"}]},
            r"files\[0\]\.url: cannot read 'http://127\.0\.0\.1:9/x'",
        ),
        (
            {"files": [{"path": "a", "url": "nosuchproto://x/y"}]},
            r"files\[0\]\.url: cannot read 'nosuchproto://x/y'.*nosuchproto",
        ),
        (
            {"dirs": [{"path": "r", "git": "file:///nonexistent/sandbank/repo"}]},
            r"dirs\[0\]\.git\.url: git ls-remote failed",
        ),
    ],
)
async def test_unreadable_sources_fail_before_anything_is_created(
    local: Provider, entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        await create_sandbox(local, entry)
    assert await local.list() == []


async def test_a_missing_http_object_and_a_bad_git_ref(
    local: Provider,
    http_root: tuple[Path, str],
    repo: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"  # where the worker's git clones go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _, base_url = http_root
    with pytest.raises(SourceError, match=r"files\[0\]\.url: .*/missing\.bin' does not exist"):
        await create_sandbox(local, {"files": [{"path": "a", "url": f"{base_url}/missing.bin"}]})
    bad_ref = {
        "dirs": [{"path": "r", "git": {"url": repo["url"], "ref": "no-such-branch"}}],
    }
    with pytest.raises(
        SourceError, match=r"dirs\[0\]\.git\.ref: 'no-such-branch' is not a branch or tag"
    ):
        await create_sandbox(local, bad_ref)
    missing_commit = {
        "dirs": [{"path": "r", "git": {"url": repo["url"], "ref": "0" * 40}}],
    }
    with pytest.raises(SourceError, match=r"dirs\[0\]\.git: git fetch failed"):
        await create_sandbox(local, missing_commit)  # the sandbox existed: it is destroyed
    assert await local.list() == []
    assert list(scratch.iterdir()) == []  # and the clone is gone


async def test_bad_base64_and_escapes_are_refused_before_creating(local: Provider) -> None:
    for bad in (
        {"files": [{"path": "a", "base64": "%%%"}]},
        {"files": [{"path": "../a", "text": "x"}]},
        {"files": [{"path": "/etc/a", "text": "x"}]},
    ):
        with pytest.raises(ConfigurationError, match=r"files\[0\]\.(base64|path)"):
            await create_sandbox(local, bad)
    assert await local.list() == []


async def test_provider_sandbox_applies_contents_and_cleans_up(
    provider: Provider, store: SnapshotStore
) -> None:
    async with provider.sandbox(counted(), store=store) as box:
        assert await box.read_file("src/main.c")
    assert await provider.list() == []


async def test_host_roots_limit_what_a_manifest_may_read(local: Provider, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ok.txt").write_text("ok\n")
    (allowed / "escape").symlink_to("/etc")
    roots = [str(allowed)]
    box = await create_sandbox(
        local, {"files": [{"path": "ok.txt", "host": str(allowed / "ok.txt")}]}, host_roots=roots
    )
    assert await box.read_file("ok.txt") == b"ok\n"
    await box.destroy()
    for entry, field in [
        ({"files": [{"path": "p", "host": "/etc/passwd"}]}, r"files\[0\]\.host"),
        (
            {"files": [{"path": "p", "host": str(allowed / "escape" / "passwd")}]},
            r"files\[0\]\.host",
        ),
        ({"dirs": [{"path": "d", "url": "file:///etc"}]}, r"dirs\[0\]\.url"),
    ]:
        with pytest.raises(SourceError, match=field + ".* is outside the host directories"):
            await create_sandbox(local, entry, host_roots=roots)
    assert await local.list() == []
