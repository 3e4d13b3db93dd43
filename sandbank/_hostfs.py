"""Host file system helpers shared by the local provider and the snapshot store.

Both walk a workspace on this host through directory file descriptors, never following
a symlink, so a link swapped in by the sandbox cannot redirect a host-side read or write.
"""

from __future__ import annotations

import os
import stat
from typing import Literal

__all__ = ["O_DIR_NOFOLLOW", "entry_type", "open_dir_nofollow"]

O_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags that open a directory and refuse a symlink in its place."""


def entry_type(mode: int) -> Literal["file", "dir", "symlink", "other"]:
    """The ``FileEntry.type`` of an ``st_mode``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def open_dir_nofollow(root_fd: int, parts: list[bytes]) -> int:
    """Open the directory ``parts`` below ``root_fd`` without following any symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = os.open(part, O_DIR_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd
