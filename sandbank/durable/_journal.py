"""Exec journal: run a command at most once per exec id, and let a retry collect its result.

A small POSIX shell wrapper runs inside the sandbox. The first call with an id creates the
id's directory (``mkdir`` is atomic), keeps a lease file fresh while the command runs with
its output going to files, and writes the exit status last. A later call with the same id
waits for that status while the lease stays fresh and returns the same output. A run that
died without a status is reported as interrupted, never started again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbank.errors import ProviderError

__all__ = ["WRAPPER", "JournalResult", "parse_journal_output", "valid_exec_id"]

_EXEC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Arguments: journal-dir exec-id cwd timeout stdout-limit stderr-limit has-stdin -- argv...
WRAPPER = r"""
root=$1; id=$2; cwd=$3; tmo=$4; olim=$5; elim=$6; hasin=$7; shift 7
[ -d "$root" ] || mkdir -p "$root" 2>/dev/null
case $root in /*) ;; *) root=$PWD/$root;; esac
[ -d "$root" ] || { echo "sandbank-exec: cannot use journal $root" >&2; exit 125; }
d="$root/$id"; state=done; resumed=0
if mkdir "$d" 2>/dev/null; then
  : > "$d/alive"
  ( while [ ! -f "$d/rc" ]; do touch "$d/alive"; sleep 1; done ) </dev/null >/dev/null 2>&1 &
  if [ "$hasin" = 1 ]; then cat > "$d/stdin"; else : > "$d/stdin"; fi
  [ "$tmo" != 0 ] && start=$(date +%s)
  (
    cd "$cwd" || exit 126
    if [ "$tmo" != 0 ] && command -v timeout >/dev/null 2>&1; then
      exec timeout -k 5 "$tmo" "$@"
    else
      exec "$@"
    fi
  ) < "$d/stdin" > "$d/out" 2> "$d/err"
  rc=$?
  if [ "$tmo" != 0 ] && { [ $rc = 124 ] || [ $rc = 137 ]; }; then
    [ $(( $(date +%s) - start )) -ge "${tmo%.*}" ] && : > "$d/timedout"
  fi
  echo $rc > "$d/rc.tmp" && mv "$d/rc.tmp" "$d/rc"
else
  resumed=1; waited=0
  while [ ! -f "$d/rc" ]; do
    if [ -f "$d/alive" ]; then
      age=$(( $(date +%s) - $(stat -c %Y "$d/alive" 2>/dev/null || echo 0) ))
      if [ $age -gt 6 ]; then
        [ -f "$d/rc" ] || state=interrupted
        break
      fi
    else
      waited=$((waited + 1))
      [ $waited -gt 100 ] && { state=interrupted; break; }
    fi
    sleep 0.2
  done
fi
rc=-1; [ -f "$d/rc" ] && read -r rc < "$d/rc"
[ -f "$d/timedout" ] && state=timeout
osz=$(( $(wc -c < "$d/out" 2>/dev/null || echo 0) ))
esz=$(( $(wc -c < "$d/err" 2>/dev/null || echo 0) ))
printf 'sandbank-exec 1 %s %s %s %s %s\n' "$state" "$rc" "$osz" "$esz" "$resumed"
head -c "$olim" "$d/out" 2>/dev/null
head -c "$elim" "$d/err" 2>/dev/null
exit 0
"""


def valid_exec_id(exec_id: str) -> bool:
    return bool(_EXEC_ID.match(exec_id))


@dataclass(frozen=True)
class JournalResult:
    state: str
    """done, timeout or interrupted."""
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_size: int
    stderr_size: int
    resumed: bool


def parse_journal_output(raw: bytes, stdout_limit: int, stderr_limit: int) -> JournalResult:
    """Split the wrapper's framed output into the command's result."""
    header, sep, body = raw.partition(b"\n")
    parts = header.decode("ascii", "replace").split()
    if not sep or len(parts) != 7 or parts[:2] != ["sandbank-exec", "1"]:
        raise ProviderError(
            f"exec journal wrapper printed an unexpected header {header[:200]!r}; "
            f"the sandbox needs a POSIX /bin/sh with mkdir, cat, head, wc and date",
            retryable=False,
        )
    state, rc, osz, esz, resumed = parts[2], int(parts[3]), int(parts[4]), int(parts[5]), parts[6]
    out_len = min(osz, stdout_limit)
    err_len = min(esz, stderr_limit)
    return JournalResult(
        state=state,
        exit_code=rc,
        stdout=body[:out_len],
        stderr=body[out_len : out_len + err_len],
        stdout_size=osz,
        stderr_size=esz,
        resumed=resumed == "1",
    )
