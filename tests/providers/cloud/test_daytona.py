"""The daytona provider's own behaviour: its exception boundary, credentials, and faults
answered by the Daytona emulator (a fake of the service, not the service)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from sandbank.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.providers.base import SandboxStatus
from sandbank.testing.emulators.daytona import DaytonaEmulator

daytona = pytest.importorskip("daytona", reason="the daytona SDK is missing")

from sandbank.providers.daytona import _ERROR_KINDS, DaytonaProvider, map_daytona_error  # noqa: E402


def _sdk_exception_classes() -> list[type[BaseException]]:
    classes = {
        obj
        for name in dir(daytona)
        if inspect.isclass(obj := getattr(daytona, name)) and issubclass(obj, BaseException)
    }
    return sorted(classes, key=lambda cls: cls.__name__)


def test_every_sdk_exception_class_is_mapped() -> None:
    classes = _sdk_exception_classes()
    assert len(classes) > 30  # the SDK exports its whole error tree
    unmapped = [cls.__name__ for cls in classes if cls.__name__ not in _ERROR_KINDS]
    assert unmapped == [], f"add these SDK exceptions to _ERROR_KINDS: {unmapped}"
    for cls in classes:
        mapped = map_daytona_error(cls("boom", status_code=None), "sb-1")
        assert isinstance(mapped, SandbankError), cls


@pytest.mark.parametrize(
    ("name", "status", "expected", "retryable"),
    [
        ("DaytonaRateLimitError", 429, ProviderError, True),
        ("DaytonaInternalServerError", 500, ProviderError, True),
        ("DaytonaBadGatewayError", 502, ProviderError, True),
        ("DaytonaServiceUnavailableError", 503, ProviderError, True),
        ("DaytonaConnectionError", None, ProviderUnavailable, True),
        ("DaytonaAuthenticationError", 401, ConfigurationError, False),
        ("DaytonaForbiddenError", 403, ConfigurationError, False),
        ("DaytonaBadRequestError", 400, ConfigurationError, False),
        ("DaytonaNotFoundError", 404, SandboxNotFound, False),
    ],
)
def test_retryable_classification(
    name: str, status: int | None, expected: type[SandbankError], retryable: bool
) -> None:
    error = map_daytona_error(getattr(daytona, name)("boom", status_code=status), "sb-1")
    assert type(error) is expected
    assert error.retryable is retryable
    if status:
        assert f"HTTP {status}" in str(error) or expected is SandboxNotFound


def test_not_found_on_an_open_handle_is_lost() -> None:
    error = map_daytona_error(
        daytona.DaytonaNotFoundError("gone", status_code=404), "sb-1", open_handle=True
    )
    assert isinstance(error, SandboxLost) and error.retryable


async def test_missing_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAYTONA_API_KEY", raising=False)
    provider = DaytonaProvider(api_url="http://127.0.0.1:9/api")
    with pytest.raises(ConfigurationError) as caught:
        await provider.create({"network": True})
    assert "DAYTONA_API_KEY" in str(caught.value) and "DAYTONA_API_URL" in str(caught.value)


async def test_a_refused_key_names_the_variable(daytona_emulator: DaytonaEmulator) -> None:
    provider = DaytonaProvider(api_key="wrong-key", api_url=daytona_emulator.api_url)
    try:
        with pytest.raises(ConfigurationError) as caught:
            await provider.create({"network": True})
        assert "DAYTONA_API_KEY" in str(caught.value) and "401" in str(caught.value)
        assert not caught.value.retryable
    finally:
        await provider.aclose()
    assert daytona_emulator.engine.all() == []


@pytest.mark.parametrize(
    ("method", "suffix", "status"),
    [
        ("POST", "/process/execute", 429),
        ("POST", "/process/execute", 500),
        ("POST", "/files/bulk-upload", 503),
        ("POST", "/process/execute", 0),  # the connection drops mid-exec
    ],
)
async def test_transient_faults_are_retryable_and_the_sandbox_survives(
    daytona_emulator: DaytonaEmulator, daytona_provider: Any, method: str, suffix: str, status: int
) -> None:
    box = await daytona_provider.create({"network": True})
    try:
        daytona_emulator.inject(method, suffix, status)
        with pytest.raises((ProviderError, ProviderUnavailable)) as caught:
            await box.exec(["cat"], stdin=b"hi\n")
        assert caught.value.retryable, caught.value
        if status:
            assert f"HTTP {status}" in str(caught.value)
        result = await box.exec(["cat"], stdin=b"hi\n")  # the retry works
        assert (result.exit_code, result.stdout) == (0, b"hi\n")
    finally:
        await box.destroy()


async def test_a_sandbox_deleted_behind_our_back_is_lost(
    daytona_emulator: DaytonaEmulator, daytona_provider: Any
) -> None:
    emulator = daytona_emulator
    box = await daytona_provider.create({"network": True})
    await box.write_file("keep.txt", b"x")
    emulator.call(emulator.delete_behind_back(box.id))
    with pytest.raises(SandboxLost) as caught:
        await box.exec(["true"])
    assert box.id in str(caught.value) and caught.value.retryable
    with pytest.raises(SandboxLost):
        await box.read_file("keep.txt")
    assert await box.status() == SandboxStatus.LOST
    with pytest.raises(SandboxNotFound):
        await box.info()
    with pytest.raises(SandboxNotFound):
        await daytona_provider.attach(box.id)
    assert box.id not in [info.id for info in await daytona_provider.list()]
    await box.aclose()


async def test_an_oversized_file_is_refused_and_nothing_is_lost(
    daytona_emulator: DaytonaEmulator, daytona_provider: Any
) -> None:
    box = await daytona_provider.create({"network": True})
    try:
        await box.write_file("data.bin", b"old content")
        daytona_emulator.max_upload = 1024 * 1024
        with pytest.raises(ConfigurationError) as caught:
            await box.write_file("data.bin", b"\x01" * (2 * 1024 * 1024))
        assert "too large" in str(caught.value) and "413" in str(caught.value)
        assert not caught.value.retryable
        daytona_emulator.max_upload = None
        assert await box.read_file("data.bin") == b"old content"
    finally:
        daytona_emulator.max_upload = None
        await box.destroy()


async def test_list_shows_only_sandbanks_sandboxes(
    daytona_emulator: DaytonaEmulator, daytona_provider: Any
) -> None:
    emulator = daytona_emulator
    ours = await daytona_provider.create({"network": True})
    config = daytona.DaytonaConfig(api_key=emulator.api_key, api_url=emulator.api_url, target="us")

    async def foreign() -> str:
        async with daytona.AsyncDaytona(config) as client:
            return (await client.create()).id

    theirs = await foreign()
    try:
        listed = [info.id for info in await daytona_provider.list()]
        assert ours.id in listed and theirs not in listed
        with pytest.raises(SandboxNotFound):
            await daytona_provider.attach(theirs)
    finally:
        await ours.destroy()
        emulator.call(emulator.delete_behind_back(theirs))


async def test_create_sends_the_manifest(
    daytona_emulator: DaytonaEmulator, daytona_provider: Any
) -> None:
    box = await daytona_provider.create(
        {
            "network": False,
            "env": {"A": "1"},
            "workdir": "src",
            "image": "python:3.12",
            "resources": {"cpu": 2, "memory": "3Gi"},
        }
    )
    try:
        record = daytona_emulator._records[box.id].dto
        assert record["networkBlockAll"] is True and record["env"] == {"A": "1"}
        assert (record["cpu"], record["memory"]) == (2, 3)
        assert record["labels"]["sandbank"] == "1"
        result = await box.exec("pwd; echo $A")
        assert result.stdout == b"/home/daytona/workspace/src\n1\n"
        info = await box.info()
        assert info.image == "python:3.12" and info.workspace == "/home/daytona/workspace"
    finally:
        await box.destroy()


async def test_resources_without_an_image_or_with_pids_are_refused(daytona_provider: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"manifest\.image"):
        await daytona_provider.create({"network": True, "resources": {"cpu": 1}})
    with pytest.raises(SandbankError, match="pids"):
        await daytona_provider.create(
            {"network": True, "image": "python:3.12", "resources": {"pids": 10}}
        )


async def test_a_network_allow_list_is_sent_only_with_network(
    daytona_emulator: DaytonaEmulator,
) -> None:
    # The fake records the allow-list but does not enforce it (its sandboxes have all of the
    # network or none): this checks what the provider asks Daytona for.
    provider = DaytonaProvider(network_allow_list="10.0.0.0/8,192.168.1.0/24")
    try:
        open_box = await provider.create({"network": True})
        closed_box = await provider.create({"network": False})
        records = daytona_emulator._records
        assert records[open_box.id].dto["networkAllowList"] == "10.0.0.0/8,192.168.1.0/24"
        assert records[closed_box.id].dto["networkAllowList"] is None
        assert records[closed_box.id].dto["networkBlockAll"] is True
        await open_box.destroy()
        await closed_box.destroy()
    finally:
        await provider.aclose()


def test_without_the_sdk_the_error_is_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "daytona", None)  # what an absent package looks like
    with pytest.raises(ProviderUnavailable, match=r"pip install 'sandbank\[daytona\]'"):
        DaytonaProvider(api_key="k").client()
