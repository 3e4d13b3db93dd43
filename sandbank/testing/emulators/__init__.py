"""Emulators of cloud sandbox services on 127.0.0.1, for testing offline.

Each speaks its cloud's wire protocol as far as the official SDK uses it, so the real,
unmodified SDK runs against it; every emulated sandbox is a real ``local`` sandbox
(``engine.EmulatorEngine``). They are fakes of the services, not the services.
"""

from sandbank.testing.emulators.engine import (
    EmulatedNotFound,
    EmulatedSandbox,
    EmulatorEngine,
    EmulatorServer,
)

__all__ = ["EmulatedNotFound", "EmulatedSandbox", "EmulatorEngine", "EmulatorServer"]
