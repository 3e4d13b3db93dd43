"""Checks that keep tar members inside the workspace, shared by every provider.

Member names must be relative and stay inside the root. Symlinks are kept as links (their
target text is not rewritten), but no later member may be written through a link, and
hard links must point at another member inside the root. Devices are refused.
"""

from __future__ import annotations

import tarfile

from sandbank.errors import ConfigurationError, WorkspacePathError

__all__ = ["TarGuard", "member_path"]


def member_path(name: str) -> str:
    """The workspace-relative path of a tar member, or ``WorkspacePathError``."""
    if "\x00" in name:
        raise WorkspacePathError(name, "is a tar member name with a NUL byte")
    if name.startswith("/"):
        raise WorkspacePathError(name, "is an absolute tar member")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise WorkspacePathError(name, "is a tar member that climbs out with '..'")
    return "/".join(parts) or "."


class TarGuard:
    """Validates the members of one archive in order; call ``check`` for each member.

    It remembers the symlinks the archive creates, so a later member written through one
    of them is refused. Links already in the target are the extracting provider's to check.
    """

    def __init__(self) -> None:
        self._links: set[str] = set()
        self._members: set[str] = set()

    def check(self, member: tarfile.TarInfo) -> str:
        path = member_path(member.name)
        if self._links:
            slash = path.find("/")
            while slash != -1:
                parent = path[:slash]
                if parent in self._links:
                    raise WorkspacePathError(member.name, f"goes through the symlink {parent!r}")
                slash = path.find("/", slash + 1)
        if member.isdev():
            raise ConfigurationError(
                f"tar member {member.name!r} is a device node; only files, directories and "
                f"links can be imported into a workspace"
            )
        if member.islnk():
            target = member_path(member.linkname)
            if target not in self._members:
                raise WorkspacePathError(
                    member.linkname,
                    f"is the target of hard link {member.name!r}, not in the archive",
                )
        if member.issym():
            self._links.add(path)
        else:
            self._links.discard(path)
        self._members.add(path)
        return path
