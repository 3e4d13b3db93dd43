"""The e2b provider when things go wrong: every SDK exception mapped, and faults injected
into the fake of E2B (429, 500, a dropped connection, bad credentials, a sandbox deleted
behind our back, a disk too small for a file)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from sandbank.errors import (
    ConfigurationError,
    PathNotFound,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.providers.base import SandboxStatus
from sandbank.testing.emulators.fixtures import E2BFake

e2b = pytest.importorskip("e2b")

from sandbank.providers.e2b import E2BProvider, E2BSandbox, map_e2b_error  # noqa: E402
from sandbank.testing.emulators.e2b import Fault  # noqa: E402

# What each exception class the SDK exports becomes, and whether a retry can help.
EXPECTED: dict[str, tuple[type[SandbankError], bool]] = {
    "AuthenticationException": (ConfigurationError, False),
    "BuildException": (ProviderError, False),
    "CommandExitException": (ProviderError, False),
    "DockerfileSyntaxError": (ProviderError, False),
    "FileNotFoundException": (PathNotFound, False),
    "FileUploadException": (ProviderError, False),
    "GitAuthException": (ConfigurationError, False),
    "GitUpstreamException": (ProviderError, False),
    "GuestUnresponsiveException": (ProviderError, True),
    "InvalidArgumentException": (ConfigurationError, False),
    "NotEnoughSpaceException": (ProviderError, False),
    "NotFoundException": (SandboxNotFound, False),
    "RateLimitException": (ProviderError, True),
    "SandboxException": (ProviderError, False),
    "SandboxNotFoundException": (SandboxLost, True),
    "SandboxNotRunningException": (SandboxLost, True),
    "SandboxUnreachableException": (ProviderError, True),
    "SecretException": (ProviderError, False),
    "SecretNotFoundException": (ProviderError, False),
    "ServiceBusyException": (ProviderError, True),
    "TemplateException": (ConfigurationError, False),
    "TimeoutException": (ProviderError, True),
    "VolumeException": (ProviderError, False),
    "VolumeNotFoundException": (SandboxNotFound, False),
    "VolumePathNotFoundException": (SandboxNotFound, False),
}


def _instance(cls: type[BaseException]) -> BaseException:
    if cls is e2b.CommandExitException:
        return cls(stderr="boom", stdout="", exit_code=3, error=None)
    if cls is e2b.DockerfileSyntaxError:
        return cls("bad line")
    return cls("something failed")


def test_every_exception_the_sdk_exports_is_mapped() -> None:
    exported = {
        name
        for name, obj in vars(e2b).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert exported == set(EXPECTED), (
        "the e2b SDK's exception classes changed: map the new ones in map_e2b_error and "
        f"list them here (new: {sorted(exported - set(EXPECTED))}, "
        f"gone: {sorted(set(EXPECTED) - exported)})"
    )
    for name, (kind, retryable) in EXPECTED.items():
        error = map_e2b_error(_instance(getattr(e2b, name)), sandbox_id="sbx-1")
        assert type(error) is kind, f"{name} became {type(error).__name__}, not {kind.__name__}"
        assert error.retryable is retryable, f"{name}: retryable should be {retryable}"
        assert "(" + name + ")" not in str(error), f"{name} fell through to the fallback"


def test_status_codes_decide_retries() -> None:
    assert map_e2b_error(e2b.SandboxException("x", status_code=503)).retryable
    assert map_e2b_error(e2b.SandboxException("x", status_code=500)).retryable
    assert not map_e2b_error(e2b.SandboxException("x", status_code=400)).retryable


def test_transport_errors_are_retryable() -> None:
    import httpx
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError

    assert map_e2b_error(httpx.ReadError("reset")).retryable
    assert map_e2b_error(ConnectError(Code.UNAVAILABLE, "dropped")).retryable


def test_missing_sdk_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "e2b", None)
    with pytest.raises(ProviderUnavailable, match=r"pip install 'sandbank\[e2b\]'"):
        map_e2b_error(RuntimeError("x"))


async def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="E2B_API_KEY") as caught:
        await E2BProvider().create({"network": True})
    assert not caught.value.retryable


@pytest_asyncio.fixture
async def box(e2b_emulator: E2BFake, bwrap: str) -> AsyncIterator[E2BSandbox]:
    provider = E2BProvider()
    sandbox = await provider.create()
    try:
        yield sandbox
    finally:
        e2b_emulator.emulator.faults.clear()
        with contextlib.suppress(SandboxNotFound, SandboxLost):
            await sandbox.destroy()


async def test_wrong_api_key_is_an_auth_error(
    e2b_emulator: E2BFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2B_API_KEY", "e2b_" + "0" * 40)
    with pytest.raises(ConfigurationError, match="E2B_API_KEY") as caught:
        await E2BProvider().create()
    assert not caught.value.retryable
    assert e2b_emulator.engine.all() == []


async def test_rate_limit_is_retried_by_the_sdk_then_retryable(
    e2b_emulator: E2BFake, bwrap: str
) -> None:
    emulator = e2b_emulator.emulator
    emulator.requests.clear()
    emulator.faults.append(Fault("/v2/sandboxes", 429, times=5))
    with pytest.raises(ProviderError, match=r"(?i)rate limit") as caught:
        await E2BProvider(retries=1).create()
    assert caught.value.retryable
    creates = [r for r in emulator.requests if r == ("POST", "/v2/sandboxes")]
    assert len(creates) == 2, "the SDK retries a 429 once with retries=1"


async def test_one_rate_limit_is_absorbed_by_the_sdk(e2b_emulator: E2BFake, bwrap: str) -> None:
    e2b_emulator.emulator.faults.append(Fault("/v2/sandboxes", 429, times=1))
    provider = E2BProvider(retries=2)
    box = await provider.create()
    try:
        assert (await box.exec(["echo", "ok"])).stdout == b"ok\n"
    finally:
        await box.destroy()


async def test_server_error_is_retryable(e2b_emulator: E2BFake, bwrap: str) -> None:
    e2b_emulator.emulator.faults.append(Fault("/v2/sandboxes", 500, times=5))
    with pytest.raises(ProviderError) as caught:
        await E2BProvider(retries=0).create()
    assert caught.value.retryable
    assert "500" in str(caught.value) or "injected" in str(caught.value)


async def test_connection_dropped_mid_exec(box: E2BSandbox, e2b_emulator: E2BFake) -> None:
    faults = e2b_emulator.emulator.faults
    faults.append(Fault("/process.Process/Start", "drop", times=1))
    with pytest.raises(SandbankError) as caught:
        await box.exec("echo first; sleep 1; echo second", timeout=30)
    assert caught.value.retryable, caught.value
    assert not isinstance(caught.value, SandboxLost), "the sandbox is still there"
    assert (await box.exec(["echo", "again"])).stdout == b"again\n"


async def test_sandbox_deleted_behind_our_back_is_lost(
    box: E2BSandbox, e2b_emulator: E2BFake
) -> None:
    await box.write_file("kept.txt", "x")
    e2b_emulator.server.call(e2b_emulator.engine.destroy(box.id))
    with pytest.raises(SandboxLost) as caught:
        await box.exec(["true"])
    assert caught.value.retryable
    with pytest.raises(SandboxLost):
        await box.read_file("kept.txt")
    assert await box.status() == SandboxStatus.LOST


async def test_oversized_file_is_refused_and_nothing_is_lost(
    box: E2BSandbox, e2b_emulator: E2BFake
) -> None:
    emulator = e2b_emulator.emulator
    await box.write_file("data.bin", b"old")
    limit = emulator.max_file_size
    emulator.max_file_size = 1024 * 1024
    try:
        with pytest.raises(ProviderError, match="space") as caught:
            await box.write_file("data.bin", b"\0" * (2 * 1024 * 1024))
        assert not caught.value.retryable
    finally:
        emulator.max_file_size = limit
    assert await box.read_file("data.bin") == b"old"


async def test_attach_unknown_and_foreign_sandboxes(e2b_emulator: E2BFake, bwrap: str) -> None:
    provider = E2BProvider()
    with pytest.raises(SandboxNotFound):
        await provider.attach("no-such-sandbox")
    foreign = e2b_emulator.server.call(e2b_emulator.engine.create(metadata={"owner": "else"}))
    try:
        with pytest.raises(SandboxNotFound):
            await provider.attach(foreign.id)
        assert foreign.id not in [info.id for info in await provider.list()]
    finally:
        e2b_emulator.server.call(e2b_emulator.engine.destroy(foreign.id))


async def test_native_snapshot_makes_new_sandboxes(box: E2BSandbox, e2b_emulator: E2BFake) -> None:
    await box.write_file("src/run.sh", b"#!/bin/sh\necho run\n", mode=0o755)
    snapshot_id = await box.snapshot()
    await box.write_file("src/run.sh", b"changed after the snapshot")
    provider = E2BProvider()
    copy = await provider.create({"image": {"hints": {"e2b": snapshot_id}}})
    try:
        assert (await copy.exec(["./src/run.sh"])).stdout == b"run\n"
        assert (await copy.info()).image == snapshot_id
    finally:
        await copy.destroy()


async def test_sandbox_past_its_lifetime_is_lost(e2b_emulator: E2BFake, bwrap: str) -> None:
    provider = E2BProvider(lifetime=1)
    box = await provider.create()
    assert (await box.exec(["true"])).ok
    await asyncio.sleep(2)
    with pytest.raises(SandboxLost):
        await box.exec(["true"])
    assert await box.status() == SandboxStatus.LOST
    assert box.id not in [info.id for info in await provider.list()]


async def test_attach_renews_the_lifetime(e2b_emulator: E2BFake, bwrap: str) -> None:
    provider = E2BProvider(lifetime=2)
    box = await provider.create()
    try:
        await asyncio.sleep(1.2)
        again = await E2BProvider(lifetime=2).attach(box.id)
        await asyncio.sleep(1.2)  # 2.4 s after create, 1.2 s after attach
        assert (await again.exec(["echo", "alive"])).stdout == b"alive\n"
    finally:
        with contextlib.suppress(SandboxNotFound, SandboxLost):
            await box.destroy()
