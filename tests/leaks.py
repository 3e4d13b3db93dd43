"""Helpers of the secret leak tests: look for a value where it must not be."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes()
    ]


def _command_lines() -> list[tuple[str, bytes]]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            found.append((proc.name, (proc / "cmdline").read_bytes()))
        except OSError:
            continue
    return found


async def watch_command_lines(
    running: asyncio.Future[Any], needles: list[str], marker: bytes
) -> bool:
    """Assert no process's command line holds a needle until ``running`` ends.

    Returns whether a command line starting with ``marker`` was seen (else the watch
    proved nothing).
    """
    seen = False
    while not running.done():
        for pid, cmdline in await asyncio.to_thread(_command_lines):
            for needle in needles:
                assert needle.encode() not in cmdline, f"pid {pid}: {cmdline!r}"
            seen = seen or cmdline.startswith(marker)
        await asyncio.sleep(0.02)
    return seen
