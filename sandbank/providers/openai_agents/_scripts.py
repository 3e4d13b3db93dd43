"""Shell scripts the adapter runs through the SDK's exec, and the parser of their output.

The SDK's exec takes an argv and nothing else (no cwd, env or stdin), and some clients
rewrite absolute arguments, so every script is one ``/bin/sh -c`` string with its values
quoted into it. Each resolves paths inside the sandbox (GNU ``realpath -m``, else Python)
and refuses, with a marker on stderr and a known exit code, any that leaves the workspace.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

from sandbank.providers.base import FileEntry

__all__ = [
    "ERROR_CODES",
    "ESCAPES",
    "MARKER",
    "MISSING",
    "NO_TOOLS",
    "ROOT_GONE",
    "WRONG_TYPE",
    "chmod_script",
    "command_script",
    "links_script",
    "list_script",
    "mkdir_script",
    "parents_script",
    "parse_listing",
    "remove_script",
    "stage_script",
    "stat_script",
]

MARKER = b"sandbank-oa: "
ESCAPES, MISSING, WRONG_TYPE, ROOT_GONE, NO_TOOLS = 111, 112, 113, 120, 121
ERROR_CODES = frozenset({ESCAPES, MISSING, WRONG_TYPE, ROOT_GONE, NO_TOOLS})
MAX_SCRIPT = 120 * 1024
"""Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN)."""

_PRELUDE = """\
oa_fail() {{ printf 'sandbank-oa: %s\\n' "$2" >&2; exit "$1"; }}
oa_root=$(cd -P -- {root} 2>/dev/null && pwd -P) || oa_fail 120 'the workspace root is gone'
oa_real() {{
  if realpath -m / >/dev/null 2>&1; then realpath -m -- "$1"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import os,sys; sys.stdout.write(os.path.realpath(sys.argv[1]))' "$1"
  else oa_fail 121 'the sandbox has neither GNU realpath nor python3'; fi
}}
oa_in() {{
  case $1 in "$oa_root"|"$oa_root"/*) ;; *) oa_fail 111 "$2 resolves to $1";; esac
}}
"""

_LIST_PY = r"""
import os, stat, sys
out = sys.stdout.buffer
for top, dirs, files in os.walk(b"."):
    for name in sorted(dirs + files):
        full = os.path.join(top, name)
        st = os.lstat(full)
        m = st.st_mode
        kind = b"l" if stat.S_ISLNK(m) else b"d" if stat.S_ISDIR(m) else b"o"
        kind = b"f" if stat.S_ISREG(m) else kind
        link = os.readlink(full) if kind == b"l" else b""
        mode, mtime = b"%o" % stat.S_IMODE(m), b"%.9f" % st.st_mtime
        row = [kind, b"%d" % st.st_size, mode, mtime, full[2:], link]
        out.write(b"\0".join(row) + b"\0")
"""
_FIELDS = 6  # kind, size, mode (octal), mtime, path, link target
_TYPES: dict[bytes, Literal["file", "dir", "symlink", "other"]] = {
    b"f": "file",
    b"d": "dir",
    b"l": "symlink",
}


def _q(text: str) -> str:
    return shlex.quote(text)


def _under(rel: str) -> str:
    """A quoted ``"$oa_root/rel"`` (``rel`` is workspace-relative, '.' for the root)."""
    return '"$oa_root"' if rel == "." else f'"$oa_root"/{_q(rel)}'


def _script(root: str, body: str) -> str:
    return _PRELUDE.format(root=_q(root)) + body


def _resolve(var: str, rel: str, what: str) -> str:
    """Set ``var`` to the real path of ``rel`` and refuse it outside the workspace."""
    return f'{var}=$(oa_real {_under(rel)}) || exit $?\noa_in "${var}" {_q(what)}\n'


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent or ".", name


def stat_script(root: str, rel: str, *, make_parent: bool = False) -> str:
    """Prints ``KIND MODE SIZE\\nREALPATH`` for ``rel`` (following links that stay inside).

    KIND is ``f``, ``d``, ``o`` (other) or ``m`` (missing); MODE (octal) and SIZE are for
    files only.
    ``make_parent`` creates the missing parent directories of a missing file.
    """
    body = _resolve("t", rel, rel)
    body += (
        'if [ -d "$t" ]; then k=d; elif [ -f "$t" ]; then k=f; elif [ -e "$t" ]; then k=o; '
        "else k=m; fi\n"
        'm=""; [ "$k" = f ] && m=$(stat -c "%a %s" -- "$t" 2>/dev/null)\n'
    )
    if make_parent:
        body += (
            '[ "$k" = m ] && { mkdir -p -- "${t%/*}" 2>/dev/null || '
            f"oa_fail 113 {_q(f'a parent of {rel} is not a directory')}; }}\n"
        )
    body += 'printf "%s %s\\n%s" "$k" "$m" "$t"\n'
    return _script(root, body)


def mkdir_script(root: str, rel: str) -> str:
    body = _resolve("t", rel, rel)
    not_dir = _q(f"{rel} exists and is not a directory")
    bad_parent = _q(f"a parent of {rel} is not a directory")
    body += (
        f'[ -e "$t" ] && [ ! -d "$t" ] && oa_fail 113 {not_dir}\n'
        f'mkdir -p -- "$t" 2>/dev/null || oa_fail 113 {bad_parent}\n'
    )
    return _script(root, body)


def remove_script(root: str, rel: str) -> str:
    """Removes ``rel`` (a link itself, never its target); its parent must stay inside."""
    parent, name = _split(rel)
    body = _resolve("p", parent, rel)
    body += (
        f't="$p"/{_q(name)}\n'
        f'[ -e "$t" ] || [ -L "$t" ] || oa_fail 112 {_q(f"no such file: {rel}")}\n'
        'rm -rf -- "$t" || oa_fail 113 "could not remove it"\n'
    )
    return _script(root, body)


def list_script(root: str, rel: str) -> str:
    """Lists the tree under the directory ``rel`` as NUL-separated fields (``parse_listing``).

    ``rel`` may be a symlink to a directory inside; links below it are never followed.
    """
    body = _resolve("t", rel, rel)
    body += (
        f'[ -e "$t" ] || oa_fail 112 {_q(f"no such directory: {rel}")}\n'
        f'[ -d "$t" ] || oa_fail 113 {_q(f"{rel} is not a directory")}\n'
        'cd -- "$t" || exit 113\n'
        "if find . -maxdepth 0 -printf '' >/dev/null 2>&1; then\n"
        "  exec find . -mindepth 1 -printf '%y\\0%s\\0%m\\0%T@\\0%P\\0%l\\0'\n"
        "fi\n"
        f"command -v python3 >/dev/null 2>&1 && exec python3 -c {_q(_LIST_PY)}\n"
        "oa_fail 121 'the sandbox has neither GNU find nor python3'\n"
    )
    return _script(root, body)


def links_script(root: str, links: Sequence[tuple[str, str]]) -> str:
    """Creates symlinks ``(path, target)``; a link's parent must stay inside the workspace.

    A link's target is only text: any target is allowed, as a tar extraction allows it.
    """
    body = ""
    for rel, target in links:
        parent, name = _split(rel)
        is_dir = _q(f"{rel} is a directory in the workspace; the archive has a link there")
        body += _resolve("p", parent, rel)
        body += (
            f'mkdir -p -- "$p" && d="$p"/{_q(name)} || exit 113\n'
            f'if [ -d "$d" ] && [ ! -L "$d" ]; then oa_fail 113 {is_dir}; fi\n'
            f'rm -f -- "$d" && ln -s -- {_q(target)} "$d" || exit 113\n'
        )
    return _script(root, body)


def parents_script(root: str, rels: Sequence[str]) -> str:
    """Refuses if any of ``rels`` resolves outside the workspace (nothing is created)."""
    body = "".join(_resolve("t", rel, rel) for rel in rels)
    return _script(root, body)


def chmod_script(real: str, mode: int) -> str:
    """Sets the permission bits of a file resolved inside the workspace; prints its size."""
    return f"chmod {mode:o} -- {_q(real)} && stat -c %s -- {_q(real)}"


def stage_script(stage: str) -> str:
    """Creates the sandbox's private staging directory (outside the workspace)."""
    return f"mkdir -m 700 -- {_q(stage)}"


def command_script(
    root: str,
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: str | None,
    timeout: float | None,
) -> str:
    """Runs ``argv`` in ``cwd`` with ``env`` on top of the sandbox's environment.

    ``stdin`` is a staged file (unlinked once open), else ``/dev/null``. With a timeout the
    command runs under ``timeout`` (when the sandbox has it): TERM to its whole process
    group, KILL a second later, exit 124 or 137.
    """
    if stdin is None:
        body = "exec </dev/null\n"
    else:
        body = f"exec <{_q(stdin)} && rm -f -- {_q(stdin)}\n"
    body += _resolve("t", cwd, f"cwd {cwd}")
    body += (
        f'[ -d "$t" ] || oa_fail 112 {_q(f"cwd {cwd} is not a directory")}\n'
        'cd -- "$t" || oa_fail 113 "cannot enter the cwd"\n'
    )
    body += "".join(f"export {name}={_q(value)}\n" for name, value in env.items())
    command = shlex.join(argv)
    if timeout is not None:
        body += (
            "if command -v timeout >/dev/null 2>&1; then "
            f"exec timeout -k 1 {timeout:.3f} {command}; fi\n"
        )
    body += f"exec {command}\n"
    return _script(root, body)


def parse_listing(data: bytes, prefix: str) -> list[FileEntry]:
    """Entries from ``list_script`` output; paths get ``prefix`` ('' or 'sub/dir/')."""
    fields = data.split(b"\0")
    entries = []
    for i in range(0, len(fields) - _FIELDS + 1, _FIELDS):
        kind, size, mode, mtime, name, link = fields[i : i + _FIELDS]
        type_ = _TYPES.get(kind, "other")
        entries.append(
            FileEntry(
                path=prefix + os.fsdecode(name),
                type=type_,
                size=0 if type_ == "dir" else int(size),
                mode=int(mode, 8) & 0o7777,
                mtime=float(mtime),
                link_target=os.fsdecode(link) if type_ == "symlink" else None,
            )
        )
    return entries
