"""The conformance suite through the real ``modal`` SDK against the Modal emulator (a fake of
Modal's service on 127.0.0.1, backed by real local sandboxes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip(
    "modal", reason="the modal SDK is not installed (pip install 'sandbank[modal]')"
)

from sandbank.conformance import ProviderConformance
from sandbank.providers.modal import ModalProvider
from sandbank.testing.emulators.modal import ModalEmulator, modal_environment


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalEmulator]:
    with ModalEmulator(str(tmp_path_factory.mktemp("modal-emulator"))) as emu:
        yield emu


class TestModalConformance(ProviderConformance):
    expected_failures = {
        "test_pids_limit": "Modal Sandboxes have no process limit: the provider refuses "
        "resources.pids with NotSupported",
    }

    @pytest.fixture
    def provider(
        self, emulator: ModalEmulator, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[ModalProvider]:
        with modal_environment(emulator, monkeypatch):
            yield ModalProvider(app="sandbank-conformance")
