"""The modal provider beyond the conformance suite: its one exception boundary, faults the
Modal emulator (a fake of Modal's service) injects, credentials, a sandbox terminated behind
sandbank's back, Modal's native filesystem snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("modal", reason="the modal SDK is not installed")

import modal
import modal.exception
from grpclib import GRPCError, Status

from sandbank.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
    SandbankError,
    SandboxLost,
    SandboxNotFound,
)
from sandbank.providers.modal import ModalProvider, ModalSandbox, map_modal_error
from sandbank.testing.emulators.modal import Fault, ModalEmulator

# Every exception class of modal.exception, and what the boundary makes of it:
# (sandbank error, retryable). A new class in the SDK fails the completeness test.
EXPECTED: dict[str, tuple[type[SandbankError], bool]] = {
    "AlreadyExistsError": (ConfigurationError, False),
    "AuthError": (ConfigurationError, False),
    "ClientClosed": (ConfigurationError, False),
    "ConflictError": (ConfigurationError, False),
    "ConnectionError": (ProviderUnavailable, True),
    "DataLossError": (ProviderUnavailable, True),
    "DeserializationError": (ConfigurationError, False),
    "Error": (ProviderError, False),
    "ExecTimeoutError": (ProviderUnavailable, True),
    "ExecutionError": (ProviderError, False),
    "FunctionTimeoutError": (ProviderUnavailable, True),
    "ImageBuildError": (ProviderError, False),
    "InputCancellation": (ProviderError, False),
    "InteractiveTimeoutError": (ProviderUnavailable, True),
    "InternalError": (ProviderUnavailable, True),
    "InternalFailure": (ProviderUnavailable, True),
    "InvalidError": (ConfigurationError, False),
    "LogsFetchError": (ProviderError, False),
    "ModuleNotMountable": (ProviderError, False),
    "MountUploadTimeoutError": (ProviderUnavailable, True),
    "NotFoundError": (ProviderError, False),
    "OutputExpiredError": (ProviderUnavailable, True),
    "PermissionDeniedError": (ConfigurationError, False),
    "RemoteError": (ProviderError, False),
    "RequestSizeError": (ConfigurationError, False),
    "ResourceExhaustedError": (ProviderError, True),
    "SandboxFilesystemDirectoryNotEmptyError": (ProviderError, False),
    "SandboxFilesystemError": (ProviderError, False),
    "SandboxFilesystemFileTooLargeError": (ProviderError, False),
    "SandboxFilesystemIsADirectoryError": (ProviderError, False),
    "SandboxFilesystemNotADirectoryError": (ProviderError, False),
    "SandboxFilesystemNotFoundError": (ProviderError, False),
    "SandboxFilesystemPathAlreadyExistsError": (ProviderError, False),
    "SandboxFilesystemPermissionError": (ProviderError, False),
    "SandboxTerminatedError": (ProviderError, False),
    "SandboxTimeoutError": (SandboxLost, True),  # rebuilt from its last snapshot
    "SerializationError": (ConfigurationError, False),
    "ServiceError": (ProviderUnavailable, True),
    "SnapshotCreationError": (ProviderError, False),
    "TimeoutError": (ProviderUnavailable, True),
    "UnimplementedError": (ConfigurationError, False),
    "VersionError": (ConfigurationError, False),
    "VolumeUploadTimeoutError": (ProviderUnavailable, True),
    "WorkspaceManagementError": (ProviderError, False),
    "_CliUserExecutionError": (ProviderError, False),
    "_GRPCErrorWrapper": (ProviderError, False),
}


def _modal_exceptions() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(modal.exception, inspect.isclass)
        if issubclass(cls, BaseException)
        and not issubclass(cls, Warning)
        and cls.__module__ == "modal.exception"
    }


def _instance(cls: type[BaseException]) -> BaseException:
    try:
        return cls("boom")
    except TypeError:
        try:
            return cls(Status.UNKNOWN, "boom")  # type: ignore[call-arg]
        except TypeError:
            return cls.__new__(cls)


def test_every_modal_exception_is_mapped() -> None:
    classes = _modal_exceptions()
    assert sorted(classes) == sorted(EXPECTED), "modal.exception changed: map the new classes"
    for name, cls in classes.items():
        error = map_modal_error(_instance(cls))
        kind, retryable = EXPECTED[name]
        assert type(error) is kind, f"{name} became {type(error).__name__}"
        assert error.retryable is retryable, name


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (Status.UNAVAILABLE, ProviderUnavailable, True),
        (Status.INTERNAL, ProviderUnavailable, True),
        (Status.RESOURCE_EXHAUSTED, ProviderError, True),
        (Status.UNAUTHENTICATED, ConfigurationError, False),
        (Status.PERMISSION_DENIED, ConfigurationError, False),
        (Status.INVALID_ARGUMENT, ConfigurationError, False),
    ],
)
def test_grpc_status_mapping(status: Status, kind: type[SandbankError], retryable: bool) -> None:
    error = map_modal_error(GRPCError(status, "boom"))
    assert type(error) is kind
    assert error.retryable is retryable


def test_not_found_on_a_sandbox_we_had_is_lost() -> None:
    gone = modal.exception.NotFoundError("gone")
    assert isinstance(map_modal_error(gone, sandbox_id="sb-1", lost=True), SandboxLost)
    assert isinstance(map_modal_error(gone, sandbox_id="sb-1"), SandboxNotFound)


def test_auth_error_names_the_variables() -> None:
    error = map_modal_error(modal.exception.AuthError("Token ID or secret is invalid"))
    assert "MODAL_TOKEN_ID" in str(error) and "MODAL_TOKEN_SECRET" in str(error)


# -- against the emulator ------------------------------------------------------------------


@pytest.fixture
def emulator(modal_emulator: ModalEmulator) -> ModalEmulator:
    return modal_emulator


@pytest.fixture
async def provider(emulator: ModalEmulator) -> AsyncIterator[ModalProvider]:
    async with ModalProvider(app="sandbank-faults") as provider:
        yield provider


@pytest.fixture
async def box(provider: ModalProvider) -> AsyncIterator[ModalSandbox]:
    box = await provider.create({"network": False})
    try:
        yield box
    finally:
        with contextlib.suppress(SandboxNotFound):
            await provider.destroy(box.id)


async def test_missing_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.setattr(modal.config.config, "get", lambda key, *a, **k: None)
    with pytest.raises(ConfigurationError, match="MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"):
        await ModalProvider().create({"network": False})


async def test_wrong_credentials_name_the_variables(emulator: ModalEmulator) -> None:
    provider = ModalProvider(token_id="ak-wrong", token_secret="as-wrong")
    with pytest.raises(ConfigurationError, match="MODAL_TOKEN_ID") as caught:
        await provider.create({"network": False})
    assert not caught.value.retryable
    await provider.aclose()


async def test_one_unavailable_mid_exec_is_retried_by_the_sdk(
    emulator: ModalEmulator, box: ModalSandbox
) -> None:
    emulator.inject(Fault("TaskExecWait", Status.UNAVAILABLE, count=1))
    result = await box.exec("echo recovered")
    assert result.stdout == b"recovered\n"
    assert emulator.calls.count("TaskExecWait") >= 2


async def test_persistent_unavailable_mid_exec_is_a_retryable_error(
    emulator: ModalEmulator, box: ModalSandbox
) -> None:
    """The output stream keeps failing: the SDK gives up after its retries, and the error
    says to retry. (A failing TaskExecWait the SDK retries until the exec's deadline, and
    forever without one: that case cannot surface as an error.)"""
    emulator.inject(Fault("TaskExecStdioRead", Status.UNAVAILABLE, count=1000))
    try:
        with pytest.raises(ProviderUnavailable, match="retry") as caught:
            await box.exec("echo never seen", timeout=60)
        assert caught.value.retryable
    finally:
        emulator.clear_faults()
    assert (await box.exec("echo usable")).stdout == b"usable\n"


async def test_rate_limit_is_a_retryable_error(emulator: ModalEmulator, box: ModalSandbox) -> None:
    emulator.inject(fault := Fault("TaskExecStart", Status.RESOURCE_EXHAUSTED, count=1))
    with pytest.raises(ProviderError, match="rate limiting") as caught:
        await box.exec("true")
    assert caught.value.retryable and fault.count == 0
    assert (await box.exec("echo usable")).stdout == b"usable\n"


async def test_internal_error_on_create_is_retryable(
    emulator: ModalEmulator, provider: ModalProvider
) -> None:
    emulator.inject(Fault("SandboxCreateV2", Status.INTERNAL, count=1000))
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.create({"network": False})
        assert caught.value.retryable
    finally:
        emulator.clear_faults()


async def test_dropped_connection_mid_exec(emulator: ModalEmulator, box: ModalSandbox) -> None:
    """The router's connection drops while output streams: the SDK reconnects and resumes
    at the offset it had, so no byte is lost or repeated."""
    fault = Fault("TaskExecStdioRead", drop=True, count=1)
    emulator.inject(fault)
    result = await box.exec("seq 1 20000", timeout=60)
    assert fault.count == 0, "the connection was dropped"
    assert result.stdout == b"".join(b"%d\n" % i for i in range(1, 20001))


async def test_terminated_behind_our_back_is_lost(
    emulator: ModalEmulator, box: ModalSandbox
) -> None:
    engine_id = emulator.boxes[box.id].sandbox.id
    assert emulator.engine is not None
    emulator.call(emulator.engine.destroy(engine_id))
    with pytest.raises(SandboxLost, match=box.id):
        await box.exec("true")
    with pytest.raises(SandboxLost):
        await box.read_file("anything")
    assert (await box.status()).value == "lost"


async def test_unknown_image_is_a_clear_error(
    emulator: ModalEmulator, provider: ModalProvider
) -> None:
    before = len(emulator.boxes)
    with pytest.raises(ConfigurationError, match="no image 'im-doesnotexist'") as caught:
        await provider.create({"network": False, "image": "im-doesnotexist"})
    assert not caught.value.retryable
    assert len(emulator.boxes) == before, "no sandbox was made"


async def test_filesystem_snapshot_makes_an_image_to_create_from(
    provider: ModalProvider, box: ModalSandbox
) -> None:
    await box.write_file("kept/data.bin", bytes(range(256)), mode=0o600)
    image_id = await box.snapshot_filesystem()
    assert image_id.startswith("im-")
    copy = await provider.create({"network": False, "image": {"hints": {"modal": image_id}}})
    try:
        assert await copy.read_file("kept/data.bin") == bytes(range(256))
        [entry] = [e for e in await copy.list_tree("kept")]
        assert entry.mode == 0o600
        assert (await copy.info()).image == image_id
    finally:
        await provider.destroy(copy.id)


async def test_tunnels_of_declared_ports(emulator: ModalEmulator) -> None:
    """The emulator returns a made-up host for each port (nothing listens behind it): this
    checks the provider asks for the ports and reads Modal's answer back."""
    async with ModalProvider(app="sandbank-faults", ports=[8000, 8443]) as provider:
        box = await provider.create({"network": True})
        try:
            urls = await box.tunnels()
            assert sorted(urls) == [8000, 8443]
            assert all(url.startswith("https://") for url in urls.values())
        finally:
            await provider.destroy(box.id)


async def test_emulator_runs_a_command_while_its_stdin_is_open(
    provider: ModalProvider, box: ModalSandbox
) -> None:
    """Through the raw SDK, as user code would: the command answers a line of stdin while
    stdin is still open, and a command given no stdin at all finishes on its own."""
    proc = await box.sb.exec.aio("sh", "-c", "read x; echo got $x; read y; echo then $y")
    proc.stdin.write(b"one\n")
    await proc.stdin.drain.aio()
    async with asyncio.timeout(30):
        first = await anext(aiter(proc.stdout))
    assert first == "got one\n"
    proc.stdin.write(b"two\n")
    proc.stdin.write_eof()
    await proc.stdin.drain.aio()
    assert await proc.wait.aio() == 0
    assert await proc.stdout.read.aio() == "then two\n"
    quiet = await box.sb.exec.aio("true")
    async with asyncio.timeout(30):
        assert await quiet.wait.aio() == 0
