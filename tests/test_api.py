"""The public surface, the error tree, path normalisation and output capture."""

from __future__ import annotations

import inspect

import pytest

import sandbank
from sandbank import errors
from sandbank.providers.base import OutputCollector, normalize_path


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
