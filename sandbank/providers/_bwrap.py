"""The bubblewrap command line of the local provider: namespaces, mounts, users."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence

from sandbank.errors import ConfigurationError
from sandbank.providers.base import WORKSPACE

__all__ = ["EXEC_SHIM", "GROUP_FILE", "PASSWD_FILE", "bwrap_argv", "user_ids"]

SANDBOX_UID = 1000
SANDBOX_GID = 1000
ISOLATION_BWRAP = "bubblewrap: user,mount,pid,ipc,uts,cgroup,net namespaces"
ISOLATION_NONE = "none (commands run unconfined on the host)"
INSTALL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap` on Debian/Ubuntu, "
    "`dnf install bubblewrap` on Fedora), or pass isolation='none' to LocalProvider to run "
    "commands unconfined on the host"
)

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "nsswitch.conf",
    "hosts",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "inputrc",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
)
_ETC_NETWORK = ("resolv.conf", "gai.conf", "host.conf")
PASSWD_FILE = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"sandbank:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbank:{WORKSPACE}:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP_FILE = f"root:x:0:\nsandbank:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"
EXEC_SHIM = ["/bin/sh", "-c", 'exec "$@"', "sh"]
"""Runs argv through the shell's ``exec`` so a missing program exits 127 (bwrap says 1)."""


# -- the bwrap command line ---------------------------------------------------------------------


@functools.cache
def _system_mounts() -> tuple[str, ...]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return tuple(args)


def bwrap_argv(
    command: Sequence[str],
    *,
    workspace: str,
    cwd: str = ".",
    network: bool = False,
    bwrap: str = "bwrap",
    tmp: str | None = None,
    etc: Mapping[str, str] | None = None,
    uid: int = SANDBOX_UID,
    gid: int = SANDBOX_GID,
    disable_userns: bool = True,
    mount_point: str = WORKSPACE,
) -> list[str]:
    """The full ``bwrap`` argv that runs ``command`` with ``workspace`` at ``mount_point``.

    The command inherits bwrap's own environment: run the argv with ``env=sandbox_env(...)``
    (never ``--setenv``, whose values anyone on the host sees in ``ps``). ``tmp`` is a host
    directory for
    ``/tmp`` (a fresh tmpfs if None); ``etc`` maps ``/etc`` names to host files bound
    read-only in place of the host's own (by default the host's ``passwd`` and ``group``).
    """
    args = [bwrap, "--unshare-all", "--unshare-user"]
    if network:
        args.append("--share-net")
    if disable_userns:
        args.append("--disable-userns")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--uid", str(uid), "--gid", str(gid), "--hostname", "sandbank"]
    args += list(_system_mounts())
    args += ["--perms", "0755", "--dir", "/etc"]
    overrides = dict(etc) if etc is not None else {"passwd": "/etc/passwd", "group": "/etc/group"}
    names = list(_ETC_FILES) + (list(_ETC_NETWORK) if network else [])
    for name in names:
        if name not in overrides:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name, source in overrides.items():
        args += ["--ro-bind", source, f"/etc/{name}"]
    # Inside, the user maps to the caller's uid; when that is host root, a writable /proc
    # would let it change host sysctls (/proc/sys/kernel/core_pattern), so /proc is read-only.
    args += ["--proc", "/proc", "--remount-ro", "/proc", "--dev", "/dev"]
    if tmp is None:
        args += ["--perms", "1777", "--tmpfs", "/tmp"]
    else:
        args += ["--bind", tmp, "/tmp"]
    args += ["--bind", workspace, mount_point, "--remount-ro", "/"]
    target = mount_point if cwd in ("", ".") else f"{mount_point}/{cwd}"
    args += ["--chdir", target]
    args += ["--", *EXEC_SHIM, *command]
    return args


def user_ids(user: str | None) -> tuple[int, int]:
    """The uid and gid that ``manifest.user`` asks for (numeric ``uid[:gid]`` or ``root``)."""
    if user is None:
        return SANDBOX_UID, SANDBOX_GID
    if user == "root":
        return 0, 0
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    if not match:
        raise ConfigurationError(
            f"manifest.user {user!r} is not supported by the local provider; "
            f"use a numeric 'uid' or 'uid:gid', or 'root'"
        )
    uid = int(match.group(1))
    return uid, int(match.group(2)) if match.group(2) else uid
