"""Manifest conversions both ways, the refusals, and the model choice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents import OpenAIResponsesModel
from agents.sandbox import Manifest as SdkManifest
from agents.sandbox.entries import (
    Dir,
    File,
    GitRepo,
    InContainerMountStrategy,
    LocalFile,
    RcloneMountPattern,
    S3Mount,
)
from agents.sandbox.manifest import EnvEntry, EnvValue, StrEnvValue
from agents.sandbox.types import Group, User

from sandbank.agents import ScriptedAgentModel, from_sdk_manifest, model_for, to_sdk_manifest
from sandbank.errors import ManifestError
from sandbank.manifest import Manifest

RCLONE = InContainerMountStrategy(pattern=RcloneMountPattern())


class VaultValue(EnvValue):
    type: str = "test-vault"
    key: str

    async def resolve(self) -> str:
        return "from-vault"


def test_ours_to_sdk_and_back() -> None:
    ours = Manifest.parse({"env": {"A": "1", "PATH_X": "/opt"}, "user": "dev"})
    files = {"src/app.py": b"print(1)\n", "bin/data": b"\x00\xff"}
    sdk = to_sdk_manifest(ours, files)
    assert sdk.root == "/workspace"
    assert sdk.users == [User(name="dev")]
    assert isinstance(sdk.entries["src/app.py"], File)
    back, back_files = from_sdk_manifest(sdk)
    assert back == ours and back_files == files


def test_sdk_to_ours_and_back() -> None:
    sub = Dir(children={"b": File(content=b"B")})
    sdk = SdkManifest(
        entries={
            "README.md": File(content=b"# hi\n"),
            "pkg": Dir(children={"a.py": File(content=b"A"), "sub": sub}),
        },
        environment={"value": {"PLAIN": "p", "TYPED": StrEnvValue(value="t"),
                               "ENTRY": EnvEntry(value=StrEnvValue(value="e"), description="doc")}},
        users=[User(name="agent")],
    )  # fmt: skip
    ours, files = from_sdk_manifest(sdk)
    assert ours.env == {"PLAIN": "p", "TYPED": "t", "ENTRY": "e"} and ours.user == "agent"
    assert files == {"README.md": b"# hi\n", "pkg/a.py": b"A", "pkg/sub/b": b"B"}
    again = to_sdk_manifest(ours, files)
    assert from_sdk_manifest(again) == (ours, files)


@pytest.mark.parametrize(
    ("sdk", "message"),
    [
        (SdkManifest(root="/srv"), "always at /workspace"),
        (SdkManifest(users=[User(name="a"), User(name="b")]), "one user"),
        (SdkManifest(groups=[Group(name="g", users=[User(name="a")])]), "groups"),
        (SdkManifest(environment={"value": {"K": VaultValue(key="k")}}), "environment.K"),
        (SdkManifest(environment={"value": {"K": EnvEntry(value=StrEnvValue(value="v"),
                                                          ephemeral=True)}}), "ephemeral"),
        (SdkManifest(entries={"f": File(content=b"x", ephemeral=True)}), "entries.f: ephemeral"),
        (SdkManifest(entries={"f": LocalFile(src=Path("/etc/hostname"))}), "LocalFile entries"),
        (SdkManifest(entries={"g": GitRepo(repo="openai/x", ref="main")}), "GitRepo entries"),
        (SdkManifest(entries={"e": Dir()}), "Dir entries"),
        (SdkManifest(entries={"data": S3Mount(bucket="b", mount_strategy=RCLONE)}), "mounts are"),
    ],
)  # fmt: skip
def test_sdk_manifests_that_do_not_map(sdk: SdkManifest, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        from_sdk_manifest(sdk)


def test_custom_permissions_do_not_map() -> None:
    entry = File(content=b"x")
    entry.permissions.other = 0
    with pytest.raises(ManifestError, match="permissions"):
        from_sdk_manifest(SdkManifest(entries={"f": entry}))


def test_ours_that_does_not_map() -> None:
    with pytest.raises(ManifestError, match="workdir"):
        to_sdk_manifest(Manifest.parse({"workdir": "src"}))
    with pytest.raises(ManifestError, match="root"):
        to_sdk_manifest(Manifest(), {".": b"x"})


def test_model_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert isinstance(model_for(None), ScriptedAgentModel)
    unkeyed = model_for("gpt-4.1")
    assert isinstance(unkeyed, ScriptedAgentModel) and "OPENAI_API_KEY" in unkeyed.reason
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    real = model_for("gpt-4.1")
    assert isinstance(real, OpenAIResponsesModel) and real.model == "gpt-4.1"
    assert str(real._client.base_url).startswith("http://127.0.0.1:9/v1")
    assert isinstance(model_for("scripted"), ScriptedAgentModel)


def test_scripted_model_is_stateless() -> None:
    """The next step follows from the conversation, so any copy continues the script."""
    tools: list[Any] = [type("T", (), {"name": n})() for n in ("exec_command", "apply_patch")]
    first = ScriptedAgentModel().plan("hi", tools)
    assert first[0].name == "exec_command"
    history: list[Any] = [
        {"role": "user", "content": "hi"},
        {"type": "function_call_output", "call_id": "x", "output": "ok"},
    ]
    second = ScriptedAgentModel().plan(history, tools)
    assert second[0].type == "custom_tool_call" and "*** Add File: notes/turn-1-" in second[0].input
    assert ScriptedAgentModel().plan(history, tools) == second


def test_missing_sdk_gives_the_install_hint() -> None:
    probe = (
        "import sys; sys.modules['agents'] = None\n"
        "import sandbank\n"
        "try:\n    import sandbank.agents\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "ProviderUnavailable" in out.stdout and "pip install 'sandbank[agents]'" in out.stdout
