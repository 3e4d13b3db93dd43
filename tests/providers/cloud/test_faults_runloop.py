"""The runloop provider when things go wrong: every SDK exception mapped, and faults injected
into the fake of Runloop (429, 500, a dropped connection, bad credentials, a devbox deleted
behind our back)."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sandbank.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.providers.base import SandboxStatus

runloop_api_client = pytest.importorskip("runloop_api_client")

from sandbank.providers.runloop import (  # noqa: E402
    RunloopProvider,
    RunloopSandbox,
    map_runloop_error,
)

# What each exception class the SDK exports becomes, and whether a retry can help.
EXPECTED: dict[str, tuple[type[SandbankError], bool]] = {
    "APIConnectionError": (ProviderUnavailable, True),
    "APIError": (ProviderError, False),
    "APIResponseValidationError": (ProviderError, False),
    "APIStatusError": (ProviderError, False),
    "APITimeoutError": (ProviderUnavailable, True),
    "AuthenticationError": (ConfigurationError, False),
    "BadRequestError": (ConfigurationError, False),
    "ConflictError": (ProviderError, True),
    "InternalServerError": (ProviderError, True),
    "NotFoundError": (SandboxNotFound, False),
    "PermissionDeniedError": (ConfigurationError, False),
    "RateLimitError": (ProviderError, True),
    "RunloopError": (ProviderError, False),
    "UnprocessableEntityError": (ConfigurationError, False),
}
STATUS = {
    "APIStatusError": 418,
    "AuthenticationError": 401,
    "BadRequestError": 400,
    "ConflictError": 409,
    "InternalServerError": 500,
    "NotFoundError": 404,
    "PermissionDeniedError": 403,
    "RateLimitError": 429,
    "UnprocessableEntityError": 422,
}
_REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/devboxes")


def _instance(name: str) -> BaseException:
    cls = getattr(runloop_api_client, name)
    if name in STATUS:
        return cls("failed", response=httpx.Response(STATUS[name], request=_REQUEST), body=None)
    if name == "APIResponseValidationError":
        return cls(httpx.Response(200, request=_REQUEST), None)
    if name in ("APIConnectionError", "APITimeoutError"):
        return cls(request=_REQUEST)
    if name == "APIError":
        return cls("failed", _REQUEST, body=None)
    return cls("failed")


def test_every_exception_the_sdk_exports_is_mapped() -> None:
    exported = {
        name
        for name, obj in list(vars(runloop_api_client).items())
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert exported == set(EXPECTED), (
        "the runloop SDK's exception classes changed: map the new ones in map_runloop_error "
        f"and list them here (new: {sorted(exported - set(EXPECTED))}, "
        f"gone: {sorted(set(EXPECTED) - exported)})"
    )
    for name, (kind, retryable) in EXPECTED.items():
        error = map_runloop_error(_instance(name), sandbox_id="dbx-1")
        assert type(error) is kind, f"{name} became {type(error).__name__}, not {kind.__name__}"
        assert error.retryable is retryable, f"{name}: retryable should be {retryable}"


def test_the_polling_timeout_is_mapped_and_retryable() -> None:
    from runloop_api_client.lib.polling import PollingTimeout

    error = map_runloop_error(PollingTimeout("still booting", None), sandbox_id="dbx-1")
    assert type(error) is ProviderError
    assert error.retryable


def test_a_missing_devbox_under_an_open_handle_is_lost() -> None:
    error = map_runloop_error(_instance("NotFoundError"), "dbx-1", open_handle=True)
    assert isinstance(error, SandboxLost)


def test_transport_errors_are_retryable() -> None:
    assert isinstance(map_runloop_error(httpx.ReadError("reset")), ProviderUnavailable)
    assert map_runloop_error(httpx.ReadError("reset")).retryable


def test_missing_sdk_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "runloop_api_client", None)
    with pytest.raises(ProviderUnavailable, match=r"pip install 'sandbank\[runloop\]'"):
        RunloopProvider(api_key="x").client()


async def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNLOOP_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="RUNLOOP_API_KEY") as caught:
        await RunloopProvider().create({"network": True})
    assert not caught.value.retryable


@pytest_asyncio.fixture
async def box(runloop_provider: RunloopProvider, bwrap: str) -> AsyncIterator[RunloopSandbox]:
    sandbox = await runloop_provider.create()
    try:
        yield sandbox
    finally:
        with contextlib.suppress(SandboxNotFound, SandboxLost):
            await sandbox.destroy()


async def test_wrong_api_key_is_an_auth_error(runloop_emulator: Any, bwrap: str) -> None:
    provider = RunloopProvider(api_key="wrong-key")
    before = len(runloop_emulator.engine.all())
    with pytest.raises(ConfigurationError, match="RUNLOOP_API_KEY") as caught:
        await provider.create({"network": True})
    assert not caught.value.retryable
    assert len(runloop_emulator.engine.all()) == before
    await provider.aclose()


async def test_rate_limit_is_retried_by_the_sdk_then_retryable(
    runloop_emulator: Any, bwrap: str
) -> None:
    runloop_emulator.inject("POST", "/v1/devboxes", 429, times=5)
    provider = RunloopProvider(retries=1)
    with pytest.raises(ProviderError) as caught:
        await provider.create({"network": True})
    assert caught.value.retryable
    assert "429" in str(caught.value)
    creates = [r for r in runloop_emulator.requests if r == ("POST", "/v1/devboxes")]
    assert len(creates) == 2, "the SDK retries a 429 once with retries=1"
    await provider.aclose()


async def test_one_server_error_is_absorbed_by_the_sdk(
    runloop_emulator: Any, runloop_provider: RunloopProvider, bwrap: str
) -> None:
    runloop_emulator.inject("POST", "/execute", 500, times=1)
    box = await runloop_provider.create({"network": True})
    try:
        assert (await box.exec(["echo", "ok"])).stdout == b"ok\n"
    finally:
        await box.destroy()


async def test_server_errors_are_retryable(runloop_emulator: Any, bwrap: str) -> None:
    runloop_emulator.inject("POST", "/v1/devboxes", 500, times=5)
    provider = RunloopProvider(retries=0)
    with pytest.raises(ProviderError) as caught:
        await provider.create({"network": True})
    assert caught.value.retryable
    assert "500" in str(caught.value)
    await provider.aclose()


async def test_connection_dropped_mid_download(box: RunloopSandbox, runloop_emulator: Any) -> None:
    kept = bytes(range(256)) * 400  # more than the exec response carries inline
    await box.write_file("data.txt", kept)
    box.provider.retries = 0
    await box.provider.aclose()  # the next call makes a client with no retries
    runloop_emulator.inject("POST", "/download_file", 0, times=1)
    with pytest.raises(SandbankError) as caught:
        await box.read_file("data.txt")
    assert caught.value.retryable, caught.value
    assert not isinstance(caught.value, SandboxLost), "the devbox is still there"
    assert await box.read_file("data.txt") == kept


async def test_devbox_deleted_behind_our_back_is_lost(
    box: RunloopSandbox, runloop_emulator: Any
) -> None:
    await box.write_file("kept.txt", "x")
    runloop_emulator.call(runloop_emulator.delete_behind_back(box.id))
    with pytest.raises(SandboxLost):
        await box.exec(["true"])
    with pytest.raises(SandboxLost):
        await box.read_file("kept.txt")
    assert await box.status() == SandboxStatus.LOST
    with pytest.raises(SandboxNotFound):
        await box.provider.attach(box.id)


async def test_attach_unknown_and_foreign_devboxes(
    runloop_provider: RunloopProvider, bwrap: str
) -> None:
    with pytest.raises(SandboxNotFound):
        await runloop_provider.attach("dbx_no_such_devbox")
    devboxes = runloop_provider.client().devboxes
    foreign = await devboxes.create(metadata={"owner": "else"})
    try:
        with pytest.raises(SandboxNotFound):
            await runloop_provider.attach(foreign.id)
        with pytest.raises(SandboxNotFound):
            await runloop_provider.destroy(foreign.id)
        assert foreign.id not in [info.id for info in await runloop_provider.list()]
        assert (await devboxes.retrieve(foreign.id)).status == "running", "left alone"
    finally:
        await devboxes.shutdown(foreign.id)


async def test_offline_devboxes_share_one_policy_and_have_no_network(
    runloop_emulator: Any, runloop_provider: RunloopProvider, bwrap: str
) -> None:
    first = await runloop_provider.create()
    second = await RunloopProvider().create()
    try:
        policies = [p async for p in runloop_provider.client().network_policies.list()]
        assert [p.name for p in policies] == ["sandbank-offline"]
        assert not policies[0].egress.allow_all
        for box in (first, second):
            view = await runloop_provider.client().devboxes.retrieve(box.id)
            assert view.launch_parameters.network_policy_id == policies[0].id
        assert not (await runloop_provider.attach(first.id)).manifest.network
        result = await first.exec(["sh", "-c", "cat /sys/class/net/*/operstate"])
        assert b"up" not in result.stdout, "an offline devbox has an interface up"
    finally:
        await first.destroy()
        await second.destroy()
        await second.provider.aclose()
