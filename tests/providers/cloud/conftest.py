"""Cloud providers against their emulators: the fixtures that start them."""

from sandbank.testing.emulators.fixtures import (
    daytona_emulator,
    daytona_emulator_server,
    daytona_provider,
    e2b_emulator,
    e2b_emulator_server,
    modal_emulator,
    modal_emulator_server,
    runloop_emulator,
    runloop_emulator_server,
    runloop_provider,
    vercel_emulator,
    vercel_emulator_server,
    vercel_provider,
)

__all__ = [
    "daytona_emulator",
    "daytona_emulator_server",
    "daytona_provider",
    "e2b_emulator",
    "e2b_emulator_server",
    "modal_emulator",
    "modal_emulator_server",
    "runloop_emulator",
    "runloop_emulator_server",
    "runloop_provider",
    "vercel_emulator",
    "vercel_emulator_server",
    "vercel_provider",
]
