"""TarGuard keeps every member of an archive inside the workspace."""

from __future__ import annotations

import tarfile

import pytest

from sandbank import ConfigurationError, WorkspacePathError
from sandbank.providers._tar import TarGuard, member_path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(("name", "expected"), [("a/b", "a/b"), ("./a/./b/", "a/b"), (".", ".")])
def test_member_path(name: str, expected: str) -> None:
    assert member_path(name) == expected


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a/../b", "x\x00y"])
def test_member_path_refuses(name: str) -> None:
    with pytest.raises(WorkspacePathError):
        member_path(name)


def test_symlinks_are_kept_but_never_written_through() -> None:
    guard = TarGuard()
    assert guard.check(member("etc", tarfile.SYMTYPE, "/etc")) == "etc"
    with pytest.raises(WorkspacePathError, match="goes through the symlink 'etc'"):
        guard.check(member("etc/passwd"))
    with pytest.raises(WorkspacePathError):
        guard.check(member("etc/deep/x"))


def test_a_later_directory_replaces_the_link() -> None:
    guard = TarGuard()
    guard.check(member("d", tarfile.SYMTYPE, "/tmp"))
    guard.check(member("d", tarfile.DIRTYPE))
    assert guard.check(member("d/file")) == "d/file"


def test_hard_links_must_point_at_earlier_members() -> None:
    guard = TarGuard()
    guard.check(member("a"))
    assert guard.check(member("b", tarfile.LNKTYPE, "a")) == "b"
    with pytest.raises(WorkspacePathError):
        guard.check(member("c", tarfile.LNKTYPE, "/etc/shadow"))
    with pytest.raises(WorkspacePathError):
        guard.check(member("d", tarfile.LNKTYPE, "missing"))


def test_devices_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="device node"):
        TarGuard().check(member("null", tarfile.CHRTYPE))
