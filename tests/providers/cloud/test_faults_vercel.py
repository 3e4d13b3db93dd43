"""The vercel provider when things go wrong: every SDK exception class mapped, and faults
injected into the fake of Vercel Sandbox (429, 500, a dropped connection, bad credentials,
a sandbox deleted behind our back)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

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

sdk = pytest.importorskip("vercel.sandbox")

import vercel.errors  # noqa: E402

from sandbank.providers.vercel import _ERROR_KINDS, VercelProvider, map_vercel_error  # noqa: E402
from sandbank.testing.emulators import vercel as fake  # noqa: E402


def _exception_classes() -> set[str]:
    names = set()
    for module in (sdk, vercel.errors):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                names.add(name)
    return names


def test_every_exception_the_sdk_exports_is_mapped() -> None:
    exported = _exception_classes()
    assert exported == set(_ERROR_KINDS), (
        "vercel-sandbox's exception classes changed: map the new ones in map_vercel_error "
        f"(new: {sorted(exported - set(_ERROR_KINDS))}, "
        f"gone: {sorted(set(_ERROR_KINDS) - exported)})"
    )


def test_unknown_and_transport_errors() -> None:
    import httpx2

    assert isinstance(map_vercel_error(httpx2.ConnectError("refused")), ProviderUnavailable)
    assert map_vercel_error(sdk.SandboxTimeoutError("slow")).retryable  # type: ignore[attr-defined]
    assert isinstance(map_vercel_error(sdk.SandboxCredentialsError("no")), ConfigurationError)


def _provider(emulator: Any, token: str = fake.TOKEN) -> VercelProvider:
    return VercelProvider(
        token=token, team_id=fake.TEAM, project_id=fake.PROJECT, base_url=emulator.url
    )


@pytest_asyncio.fixture
async def provider(vercel_emulator: Any) -> AsyncIterator[VercelProvider]:
    provider = _provider(vercel_emulator)
    yield provider
    await provider.aclose()


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retryable_statuses(
    provider: VercelProvider, vercel_emulator: Any, status: int
) -> None:
    box = await provider.create()
    try:
        vercel_emulator.inject("POST", "/cmd", status)
        with pytest.raises(ProviderError) as caught:
            await box.exec(["true"])
        assert caught.value.retryable
        assert f"HTTP {status}" in str(caught.value)
        # Nothing lost: the next call works.
        assert (await box.exec(["echo", "ok"])).stdout == b"ok\n"
    finally:
        await provider.destroy(box.id)


async def test_bad_request_is_not_retryable(provider: VercelProvider, vercel_emulator: Any) -> None:
    box = await provider.create()
    try:
        vercel_emulator.inject("POST", "/cmd", 400)
        with pytest.raises(ConfigurationError, match="do not retry"):
            await box.exec(["true"])
    finally:
        await provider.destroy(box.id)


async def test_dropped_connection(provider: VercelProvider, vercel_emulator: Any) -> None:
    box = await provider.create()
    try:
        vercel_emulator.inject("POST", "/fs/read", 0)
        await box.write_file("f.txt", b"data")
        with pytest.raises((ProviderUnavailable, ProviderError)) as caught:
            await box.read_file("f.txt")
        assert caught.value.retryable
        assert await box.read_file("f.txt") == b"data"
    finally:
        await provider.destroy(box.id)


async def test_bad_token(vercel_emulator: Any) -> None:
    provider = _provider(vercel_emulator, token="wrong")
    try:
        with pytest.raises(ConfigurationError, match="VERCEL_TOKEN"):
            await provider.create()
    finally:
        await provider.aclose()


def test_missing_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERCEL_TOKEN", "VERCEL_TEAM_ID", "VERCEL_PROJECT_ID", "VERCEL_OIDC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ConfigurationError, match=r"VERCEL_TOKEN.*VERCEL_TEAM_ID.*VERCEL_PROJECT_ID"
    ):
        VercelProvider().client()
    with pytest.raises(ConfigurationError, match="incomplete"):
        VercelProvider(token="t").client()


async def test_deleted_behind_our_back(provider: VercelProvider, vercel_emulator: Any) -> None:
    box = await provider.create()
    vercel_emulator.call(vercel_emulator.delete_behind_back(box.id))
    with pytest.raises(SandboxLost):
        await box.exec(["true"])
    with pytest.raises(SandboxNotFound):
        await provider.attach(box.id)


async def test_exec_stream_dropped(provider: VercelProvider, vercel_emulator: Any) -> None:
    """The NDJSON stream of a started command breaks: a retryable error, never a hang, and
    the sandbox still works."""
    box = await provider.create()
    try:
        vercel_emulator.inject("POST", "/cmd", 0)
        with pytest.raises(SandbankError) as caught:
            await box.exec(["echo", "hi"])
        assert caught.value.retryable, caught.value
        assert (await box.exec(["echo", "ok"])).stdout == b"ok\n"
    finally:
        await provider.destroy(box.id)
