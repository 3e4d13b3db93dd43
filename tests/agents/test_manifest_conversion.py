"""SDK manifest <-> sandbank manifest: every entry kind, in a real sandbox, and each refusal.

A converted manifest is applied the sandbank way (``create_sandbox``) and the SDK manifest
the SDK's way (``apply_manifest`` on a session over another sandbox of the same provider):
both workspaces must hold the same bytes with the same modes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents.sandbox import Manifest as SdkManifest
from agents.sandbox.entries import (
    Dir,
    File,
    GitRepo,
    InContainerMountStrategy,
    LocalDir,
    LocalFile,
    RcloneMountPattern,
    S3Mount,
)
from agents.sandbox.manifest import EnvEntry, Environment, EnvValue, StrEnvValue
from agents.sandbox.types import Group, Permissions, User

from sandbank.agents import SandbankSandboxClient, SecretRef, from_sdk_manifest, to_sdk_manifest
from sandbank.errors import ManifestError
from sandbank.manifest import Manifest, create_sandbox
from sandbank.providers.base import Provider, Sandbox

RCLONE = InContainerMountStrategy(pattern=RcloneMountPattern())


class VaultValue(EnvValue):
    type: str = "test-vault-conv"
    key: str

    async def resolve(self) -> str:
        return "from-vault"


def perms(mode: int, *, directory: bool = False) -> Permissions:
    p = Permissions.from_mode(mode)
    p.directory = directory
    return p


async def tree(box: Sandbox) -> dict[str, tuple[str, int, bytes | None]]:
    """Every entry of the workspace: its type, mode and (for a file) its bytes."""
    out: dict[str, tuple[str, int, bytes | None]] = {}
    for e in await box.list_tree():
        data = await box.read_file(e.path) if e.type == "file" else None
        out[e.path] = (e.type, e.mode, data)
    return out


@contextlib.asynccontextmanager
async def built(provider: Provider, manifest: Manifest) -> AsyncIterator[Sandbox]:
    box = await create_sandbox(provider, manifest)
    try:
        yield box
    finally:
        await box.destroy()


async def sdk_applied(provider: Provider, sdk: SdkManifest) -> dict[str, Any]:
    """The workspace the SDK itself makes of ``sdk`` (its apply_manifest: write + chmod)."""
    sdk = sdk.model_copy(update={"users": [], "environment": Environment()})  # contents only
    box = await provider.create(Manifest())
    try:
        session = SandbankSandboxClient(provider).session_for(box, sdk)
        await session.apply_manifest()
        return await tree(box)
    finally:
        await box.destroy()


@pytest.fixture
def host_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host sources under the current directory (the SDK reads only below its base dir)."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    (src / "pkg" / "deep").mkdir(parents=True)
    (src / "pkg" / "a.py").write_bytes(b"print('a')\n")
    (src / "pkg" / "deep" / "blob.bin").write_bytes(bytes(range(256)) * 9)
    for p in (src / "pkg" / "a.py", src / "pkg" / "deep" / "blob.bin"):
        p.chmod(0o644)
    (src / "one.cfg").write_bytes(b"k = v\r\n\x00tail")
    (src / "one.cfg").chmod(0o640)
    return src


def every_kind(src: Path) -> SdkManifest:
    return SdkManifest(
        entries={
            "README.md": File(content="# héllo\n".encode()),
            "bin/tool": File(content=b"#!/bin/sh\necho hi\n"),  # the SDK's default: 0o755
            "data.bin": File(content=b"\x00\xff\xfe binary", permissions=perms(0o600)),
            "plain.txt": File(content=b"rw-r--r--", permissions=perms(0o644)),
            "tree": Dir(children={
                "x.txt": File(content=b"x"),
                "private": Dir(children={"k": File(content=b"key")},
                               permissions=perms(0o700, directory=True)),
            }),
            "empty": Dir(),
            "locked": Dir(permissions=perms(0o500, directory=True)),
            "made": LocalDir(),
            "conf/one.cfg": LocalFile(src=Path("src/one.cfg"), permissions=perms(0o640)),
            "vendor": LocalDir(src=src / "pkg"),
        },
        environment={"value": {"PLAIN": "p", "TYPED": StrEnvValue(value="t"),
                               "ENTRY": EnvEntry(value=StrEnvValue(value="e"))}},
        users=[User(name="agent")],
    )  # fmt: skip


async def test_every_sdk_entry_kind_builds_the_same_workspace(
    local: Provider, host_tree: Path
) -> None:
    sdk = every_kind(host_tree)
    ours = from_sdk_manifest(sdk, exposed_ports=[8000])
    assert ours.env == {"PLAIN": "p", "TYPED": "t", "ENTRY": "e"} and ours.user == "agent"
    assert ours.ports == [8000]
    files = {f.path: f for f in ours.files}
    assert files["README.md"].text == "# héllo\n" and files["data.bin"].base64 is not None
    assert files["bin/tool"].mode == 0o755 and files["plain.txt"].mode is None
    assert files["conf/one.cfg"].host == str(host_tree / "one.cfg")
    dirs = {d.path: d for d in ours.dirs}
    assert dirs["vendor"].host == str(host_tree / "pkg") and dirs["made"].host is None
    assert dirs["tree/private"].mode == 0o700 and "tree" not in dirs
    # JSON and TOML keep it, and back to the SDK and again gives the same manifest.
    assert Manifest.from_json(ours.to_json()) == ours == Manifest.from_toml(ours.to_toml())
    again, ports = to_sdk_manifest(ours)
    assert ports == (8000,) and from_sdk_manifest(again, exposed_ports=ports) == ours

    async with built(local, ours.merged(user=None, ports=[])) as box:
        ours_tree = await tree(box)
    assert ours_tree == await sdk_applied(local, sdk)
    assert ours_tree["data.bin"] == ("file", 0o600, b"\x00\xff\xfe binary")
    assert ours_tree["conf/one.cfg"] == ("file", 0o640, b"k = v\r\n\x00tail")
    assert ours_tree["vendor/deep/blob.bin"][2] == bytes(range(256)) * 9
    assert ours_tree["locked"][:2] == ("dir", 0o500)


async def test_ours_to_sdk_and_back_builds_the_same_workspace(
    local: Provider, host_tree: Path
) -> None:
    ours = Manifest.parse({
        "env": {"A": "1"}, "user": "dev", "ports": [8080, 9000],
        "secrets": {"TOKEN": "env:SANDBANK_TEST_TOKEN", "KEY": "file:/run/key"},
        "dirs": [{"path": "empty"}, {"path": "ro", "mode": "0555"},
                 {"path": "lib", "host": str(host_tree / "pkg")}],
        "files": [{"path": "a.txt", "text": "text\n"},
                  {"path": "b.bin", "base64": "AP8A/w==", "mode": "0600"},
                  {"path": "run.sh", "text": "#!/bin/sh\n", "mode": 0o755},
                  {"path": "etc/one.cfg", "host": str(host_tree / "one.cfg")}],
    })  # fmt: skip
    sdk, ports = to_sdk_manifest(ours)
    assert ports == (8080, 9000) and sdk.users == [User(name="dev")]
    assert sdk.environment.value["TOKEN"] == SecretRef(reference="env:SANDBANK_TEST_TOKEN")
    assert isinstance(sdk.entries["etc/one.cfg"], LocalFile)
    assert sdk.entries["etc/one.cfg"].permissions == perms(0o640)  # the host file's own
    assert isinstance(sdk.entries["lib"], LocalDir) and isinstance(sdk.entries["ro"], Dir)
    # Its environment serializes with the SecretRef values and parses back (the SDK cannot
    # write a manifest with a binary File to JSON: it decodes the bytes as UTF-8).
    assert Environment.model_validate_json(sdk.environment.model_dump_json()) == sdk.environment
    back = from_sdk_manifest(sdk, exposed_ports=ports)
    assert back.env == ours.env and back.secrets == ours.secrets and back.ports == ours.ports
    assert back.user == "dev" and [f.path for f in back.files] == [f.path for f in ours.files]

    async with built(local, ours.merged(user=None, secrets={}, ports=[])) as box:
        want = await tree(box)
    async with built(local, back.merged(user=None, secrets={}, ports=[])) as box:
        assert await tree(box) == want
    sdk_tree = await sdk_applied(local, sdk)
    assert sdk_tree == want
    assert want["b.bin"] == ("file", 0o600, b"\x00\xff\x00\xff")
    assert want["etc/one.cfg"][:2] == ("file", 0o640) and want["ro"][:2] == ("dir", 0o555)


async def test_secret_refs_are_resolved_at_use_and_redacted(
    local: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBANK_TEST_TOKEN", "s3cr3t-value")
    sdk = SdkManifest(environment={"value": {
        "TOKEN": SecretRef(reference="env:SANDBANK_TEST_TOKEN"),
        "EPH": EnvEntry(value=SecretRef(reference="env:SANDBANK_TEST_TOKEN"), ephemeral=True),
    }})  # fmt: skip
    assert await sdk.environment.resolve() == {"TOKEN": "s3cr3t-value", "EPH": "s3cr3t-value"}
    ours = from_sdk_manifest(sdk)
    assert ours.secrets == {"TOKEN": "env:SANDBANK_TEST_TOKEN", "EPH": "env:SANDBANK_TEST_TOKEN"}
    assert "s3cr3t" not in ours.to_json()
    async with built(local, ours) as box:
        result = await box.exec("echo $TOKEN")
    assert result.stdout == b"[secret EPH]\n"  # one value, two names: the first by name
    with pytest.raises(ValueError, match="not a secret reference"):
        SecretRef(reference="the-value-itself")


def test_git_repos_map_both_ways() -> None:
    sdk = SdkManifest(entries={
        "app": GitRepo(repo="acme/app", ref="v2.1"),
        "lib": GitRepo(host="git.example.org:8443", repo="team/lib", ref="0123abcd" * 5,
                       permissions=perms(0o750, directory=True)),
    })  # fmt: skip
    ours = from_sdk_manifest(sdk)
    app, lib = ours.dirs
    assert app.git is not None and lib.git is not None
    assert (app.git.url, app.git.ref, app.git.depth) == (
        "https://github.com/acme/app.git",
        "v2.1",
        1,
    )
    assert lib.git.url == "https://git.example.org:8443/team/lib.git" and lib.mode == 0o750
    again, _ = to_sdk_manifest(ours)
    assert again.entries == sdk.entries


@pytest.mark.parametrize(
    ("sdk", "message"),
    [
        (SdkManifest(root="/srv"), "root '/srv': a sandbank workspace is always at /workspace"),
        (SdkManifest(users=[User(name="a"), User(name="b")]), "users: .*one user"),
        (SdkManifest(groups=[Group(name="g", users=[User(name="a")])]), "groups: "),
        (SdkManifest(environment={"value": {"K": VaultValue(key="k")}}),
         "environment.K: VaultValue values are resolved at use .*SecretRef"),
        (SdkManifest(environment={"value": {"K": EnvEntry(value=StrEnvValue(value="v"),
                                                          ephemeral=True)}}),
         "environment.K: an ephemeral value is a secret"),
        (SdkManifest(environment={"value": {"K": EnvEntry(value=StrEnvValue(value="v"),
                                                          description="doc")}}),
         "environment.K.description"),
        (SdkManifest(entries={"f": File(content=b"x", ephemeral=True)}), "entries.f: ephemeral"),
        (SdkManifest(entries={"d": Dir(children={"f": File(content=b"x",
                                                           group=User(name="u"))})}),
         "entries.d/f.group"),
        (SdkManifest(entries={"f": File(content=b"x", description="doc")}),
         "entries.f.description"),
        (SdkManifest(entries={"g": GitRepo(repo="o/x", ref="main", subpath="sub")}),
         "entries.g.subpath"),
        (SdkManifest(entries={"data": S3Mount(bucket="b", mount_strategy=RCLONE)}),
         "entries.data: S3Mount mounts are not supported"),
        (SdkManifest(entries={"big": File(content=b"x" * (1024 * 1024 + 1))}),
         r"files\[0\]: inline content passes"),
    ],
)  # fmt: skip
def test_sdk_manifests_that_do_not_map(sdk: SdkManifest, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        from_sdk_manifest(sdk)


def test_bad_exposed_ports_name_the_field() -> None:
    with pytest.raises(ManifestError, match="ports: port 70000"):
        from_sdk_manifest(SdkManifest(), exposed_ports=[70000])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workdir": "src"}, "workdir 'src'"),
        ({"image": "python:3.12-slim"}, "image: the SDK manifest has no image"),
        ({"resources": {"cpu": 1}}, "resources: the SDK manifest has no resources"),
        ({"network": True}, "network: the SDK manifest has no network"),
        ({"setup": ["make"]}, "setup: the SDK manifest has no setup"),
        ({"exclude": [".venv/"]}, "exclude: the SDK manifest has no exclude"),
        ({"files": [{"path": "f", "url": "s3://b/k"}]}, r"files\[0\].url: .*no URL sources"),
        ({"dirs": [{"path": "d", "url": "s3://b/p/"}]}, r"dirs\[0\].url: .*no URL sources"),
        ({"files": [{"path": "f", "text": "x", "mode": "4755"}]},
         r"files\[0\].mode: 4755 has setuid"),
        ({"files": [{"path": "f", "host": "/nonexistent/sandbank-x"}]},
         r"files\[0\].mode: the SDK sets a mode .* give a mode"),
        ({"dirs": [{"path": "r", "git": {"url": "git@github.com:o/r.git", "ref": "main"}}]},
         r"dirs\[0\].git.url: .*https://HOST/REPO.git"),
        ({"dirs": [{"path": "r", "git": "https://github.com/o/r.git"}]},
         r"dirs\[0\].git.ref: the SDK needs a ref"),
        ({"dirs": [{"path": "r", "git": {"url": "https://github.com/o/r.git", "ref": "main",
                                          "depth": 0}}]},
         r"dirs\[0\].git.depth: the SDK clones depth 1 only, not 0"),
    ],
)  # fmt: skip
def test_ours_that_does_not_map(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        to_sdk_manifest(Manifest.parse(data))
