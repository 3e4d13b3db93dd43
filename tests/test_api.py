"""The public surface, the error tree, path normalisation and output capture."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import sandbank
from sandbank import errors, providers
from sandbank.providers.base import (
    Capabilities,
    OutputCollector,
    Provider,
    Sandbox,
    SandboxInfo,
    normalize_path,
)


def test_all_is_explicit_and_importable() -> None:
    assert sorted(sandbank.__all__) == sandbank.__all__
    for name in sandbank.__all__:
        assert hasattr(sandbank, name), name


def test_every_error_is_exported_and_under_the_root() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    for cls in classes:
        assert issubclass(cls, sandbank.SandbankError), cls
        assert cls.__name__ in errors.__all__, cls
        assert cls.__doc__, cls


def test_retryability() -> None:
    assert sandbank.SandboxLost("x").retryable
    assert sandbank.ProviderUnavailable("down").retryable
    assert not sandbank.ProviderUnavailable("sdk missing", retryable=False).retryable
    assert not sandbank.WorkspacePathError("../x").retryable
    assert not sandbank.NotSupported("p", "pause").retryable
    assert isinstance(sandbank.PathNotFound("a"), FileNotFoundError)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b", "a/b"),
        ("./a//b/", "a/b"),
        ("a/../b", "b"),
        (".", "."),
        ("/workspace", "."),
        ("/workspace/x/y", "x/y"),
        ("a/..", "."),
    ],
)
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    "path", ["..", "../x", "a/../../x", "/etc/passwd", "/workspacex/y", "", "a\x00b"]
)
def test_normalize_path_refuses_escapes(path: str) -> None:
    with pytest.raises(sandbank.WorkspacePathError):
        normalize_path(path)


def test_normalize_path_under_another_workspace() -> None:
    assert normalize_path("/home/u/ws/a", "/home/u/ws") == "a"
    with pytest.raises(sandbank.WorkspacePathError, match="outside /home/u/ws"):
        normalize_path("/workspace/a", "/home/u/ws")


async def test_output_collector_bounds_capture_but_streams_everything() -> None:
    seen: list[tuple[str, int]] = []
    collector = OutputCollector(limit=10, on_output=lambda s, d: seen.append((s, len(d))))
    await collector.feed("stdout", b"12345678")
    await collector.feed("stdout", b"abcdef")
    await collector.feed("stderr", b"err")
    result = collector.result(0)
    assert result.stdout == b"12345678ab"
    assert result.stderr == b"err"
    assert result.truncated
    assert seen == [("stdout", 8), ("stdout", 6), ("stderr", 3)]


async def test_output_collector_awaits_async_callbacks() -> None:
    got = bytearray()

    async def sink(stream: str, data: bytes) -> None:
        got.extend(data)

    collector = OutputCollector(on_output=sink)
    await collector.feed("stdout", b"hi")
    assert bytes(got) == b"hi"
    assert not collector.result(0).truncated


def test_errors_import_no_provider_module() -> None:
    """sandbank.errors stands alone: importing it first pulls in no provider module."""
    code = (
        "import sys; import sandbank.errors as e; "
        "assert e.ExecTimeout('x', 1, e.ExecResult(137)).result.exit_code == 137; "
        "print(sorted(m for m in sys.modules if m.startswith('sandbank.providers')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
    assert sandbank.ExecResult is errors.ExecResult


def test_provider_kit_is_public() -> None:
    """Everything a provider author needs is exported, documented and type-checked."""
    for name in ["ExecRequest", "OutputCollector", "normalize_path", "HostDirSandbox"]:
        assert name in providers.__all__, name
    for name in ["run_process", "sandbox_env", "TarGuard", "HostDirectory"]:
        assert name in providers.__all__, name
    for name in providers.__all__:
        value = getattr(providers, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
    assert (Path(sandbank.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("cls", [Sandbox, Provider])
def test_every_primitive_is_documented(cls: type) -> None:
    """The underscore methods a provider implements each say what they must do."""
    names = [n for n in vars(cls) if n.startswith("_") and not n.startswith("__")]
    primitives = [n for n in names if callable(getattr(cls, n)) and n not in _HELPERS]
    assert primitives, cls
    for name in primitives:
        assert getattr(cls, name).__doc__, f"{cls.__name__}.{name} has no docstring"


_HELPERS = {"_ensure_open", "_normalize", "_file_path"}


@pytest.mark.parametrize(
    ("manifest", "capability"),
    [
        ({"network": True, "resources": {"pids": 5}}, "resource_limits"),
        ({}, "network_policy"),
        ({"network": True, "image": {"name": "python:3.12", "hints": {"bare": "x"}}}, "image"),
        ({"network": True, "image": {"hints": {"bare": "x"}}}, "image"),
        ({"network": True, "user": "1000"}, "user"),
    ],
)
def test_validate_manifest_refuses_what_is_not_declared(
    manifest: dict[str, object], capability: str
) -> None:
    with pytest.raises(errors.NotSupported, match=capability) as caught:
        _Bare().validate_manifest(manifest)
    assert caught.value.capability == capability


def test_validate_manifest_accepts_what_is_declared() -> None:
    bare = _Bare()
    assert bare.validate_manifest({"network": True, "image": {"hints": {"docker": "x"}}}).network


def test_a_generic_image_is_ignored_without_the_image_capability(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``image.name`` is a default for providers with images, so a manifest stays portable;
    only a hint addressed to a provider that cannot honour it is refused (test above)."""
    with caplog.at_level(logging.INFO, logger="sandbank.providers.base"):
        manifest = _Bare().validate_manifest({"network": True, "image": "python:3.12-slim"})
    assert manifest.image.name == "python:3.12-slim"
    assert "has no images; ignoring image 'python:3.12-slim'" in caplog.text
    full = _Bare(Capabilities(network_policy=True, resource_limits=True, image=True, user=True))
    manifest = full.validate_manifest({"resources": {"pids": 5}, "image": "i", "user": "0"})
    assert (manifest.network, manifest.user) == (False, "0")


def test_base_provider_names_the_options_it_accepts() -> None:
    with pytest.raises(errors.ConfigurationError, match=r"no options \['colour'\].*accepts: caps"):
        _Bare(colour="red")  # type: ignore[call-arg]


class _Bare(Provider):
    name = "bare"

    def __init__(self, caps: Capabilities | None = None, **options: object) -> None:
        super().__init__(**options)
        self.caps = caps or Capabilities()

    @property
    def capabilities(self) -> Capabilities:
        return self.caps

    async def create(self, manifest: object = None) -> Sandbox:
        raise NotImplementedError

    async def attach(self, sandbox_id: str) -> Sandbox:
        raise NotImplementedError

    async def list(self) -> list[SandboxInfo]:
        return []

    async def destroy(self, sandbox_id: str) -> None:
        raise NotImplementedError

    async def _info(self, sandbox_id: str) -> SandboxInfo:
        raise NotImplementedError
