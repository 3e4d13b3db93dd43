"""Activity names, inputs and outputs of the durable layer: small dataclasses, no I/O.

Workflows import this module (through ``workflow.unsafe.imports_passed_through()``), so it
holds nothing but plain data and a few pure helpers. Bytes travel as base64 text.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from sandbank.errors import ConfigurationError, SandbankError, SandboxLost

__all__ = [
    "ARGV_HINT",
    "INLINE_LIMIT",
    "MESSAGE_LIMIT",
    "NON_RETRYABLE_ERROR_TYPES",
    "BlobRef",
    "CreateInput",
    "CreateOutput",
    "DamagedCheckpoint",
    "DigestOutput",
    "EntryData",
    "ExecInput",
    "ExecInterrupted",
    "ExecOutput",
    "FindIntactInput",
    "FindIntactOutput",
    "ListTreeInput",
    "ListTreeOutput",
    "PathInput",
    "PayloadTooLarge",
    "ReadFileInput",
    "ReadFileOutput",
    "RestoreInput",
    "RestoreOutput",
    "SandboxRef",
    "SandboxUnreachable",
    "SessionDamaged",
    "SnapshotInput",
    "SnapshotOutput",
    "StageBytesInput",
    "StatusOutput",
    "WriteFileInput",
    "b64decode",
    "b64encode",
]

INLINE_LIMIT = 256 * 1024
"""Largest file content (bytes) carried inline in an activity input or output."""

STDERR_LIMIT = 64 * 1024
"""Bytes of stderr kept inline in an ``ExecOutput`` (stdout keeps ``INLINE_LIMIT``)."""

MESSAGE_LIMIT = 1024 * 1024
"""Largest encoded message (a turn, a session's start state, a request) a client sends a
session. Temporal fails a workflow task over a 2 MB payload and gRPC refuses 4 MB."""

LOCAL_RESULT_LIMIT = 16 * 1024
"""Output bytes an exec returns from its local-activity fast path; a louder command's result
is collected by a regular activity instead. Local results all go back to the server with
the workflow task, so many loud commands in one task would overflow its 4 MB message."""

LIST_TREE_LIMIT = 20_000
"""Most entries a ``list_tree`` result carries inline."""

# Activity names: string constants, so workflows never import activity code.
CREATE = "sandbank.create"
STATUS = "sandbank.status"
EXEC = "sandbank.exec"
READ_FILE = "sandbank.read_file"
WRITE_FILE = "sandbank.write_file"
LIST_TREE = "sandbank.list_tree"
REMOVE = "sandbank.remove"
MKDIR = "sandbank.mkdir"
SNAPSHOT = "sandbank.snapshot"
RESTORE = "sandbank.restore"
DESTROY = "sandbank.destroy"
PAUSE = "sandbank.pause"
RESUME = "sandbank.resume"
STOP = "sandbank.stop"
STAGE_FILE = "sandbank.stage_file"
STAGE_BYTES = "sandbank.stage_bytes"
DIGEST = "sandbank.digest"
DIGEST_LISTING = "sandbank.digest_listing"
SNAPSHOT_DIGEST_LISTING = "sandbank.snapshot_digest_listing"
FIND_INTACT = "sandbank.find_intact"


class PayloadTooLarge(ConfigurationError):
    """Data too big to travel through workflow history; ``hint`` is the way around it (by
    default: move it through the snapshot store)."""

    def __init__(
        self, what: str, size: int, limit: int = INLINE_LIMIT, hint: str | None = None
    ) -> None:
        hint = hint or (
            "move it through the snapshot store (WorkflowSandbox.stage_file / write_file "
            "with a BlobRef, or a snapshot) instead of inline"
        )
        super().__init__(
            f"{what} is {size} bytes, over the {limit}-byte limit of a workflow call; {hint}"
        )
        self.what = what
        self.size = size
        self.limit = limit


ARGV_HINT = (
    "put the data in a file instead (a write step or write_file: big content travels "
    "through the snapshot store) and pass its path, or feed it on stdin"
)
"""The way around an oversized command line or environment."""


class SessionDamaged(SandbankError):
    """The session's checkpoint cannot be restored; it refuses turns until repaired.

    ``reason`` names the checkpoint and the damaged store object; ``sandbank session repair
    ID`` (``SessionManager.repair``) rolls back to the newest checkpoint that verifies.
    """

    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(
            f"session {session_id!r} is damaged: {reason}; nothing runs until it is repaired: "
            f"`sandbank session repair {session_id}` rolls it back to its newest checkpoint "
            f"that verifies (or --to SNAPSHOT)"
        )
        self.session_id = session_id
        self.reason = reason


class SandboxUnreachable(SandboxLost):
    """No worker that can reach the sandbox picked its call up in time (its worker is gone).

    Raised on the workflow side when a call on the sandbox's worker queue passes its
    schedule-to-start bound; the session rebuilds from its last checkpoint elsewhere and
    leaves the unreachable sandbox alone (no destroy that could only wait again).
    """

    def __init__(self, sandbox_id: str, detail: str = "") -> None:
        super().__init__(sandbox_id, detail)


class ExecInterrupted(SandbankError):
    """A command with this exec id was started before, and died without an exit status.

    It is not run again (it may have had effects); run it again with a new exec id if
    that is safe.
    """


NON_RETRYABLE_ERROR_TYPES = [
    "ConfigurationError",
    "ManifestError",
    "WorkspacePathError",
    "PathNotFound",
    "PayloadTooLarge",
    "NotSupported",
    "RegistryError",
    "SandboxNotFound",
    "SandboxClosed",
    "SandboxLost",
    "SandboxUnreachable",
    "ExecTimeout",
    "ExecInterrupted",
]
"""Error types an activity retry cannot fix; the workflow side registers them."""


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


@dataclass(frozen=True)
class SandboxRef:
    """A sandbox by handle: the provider's name on the worker, the sandbox id and the task
    queue of the workers that can reach it.

    ``task_queue`` is set by ``create`` to the worker-specific queue of the worker that made
    the sandbox (``<queue>@<host>-<hash of its data dirs>``, polled by every worker on that
    host and disk); every later call for the sandbox goes there. None (refs from before
    pinning, or workers without a queue of their own) sends calls to the shared queue.
    """

    provider: str
    sandbox_id: str
    task_queue: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The sandbox itself, whichever queue the ref names."""
        return (self.provider, self.sandbox_id)


@dataclass
class BlobRef:
    """A file's content staged in the snapshot store (a one-file snapshot)."""

    snapshot_id: str
    name: str
    size: int


@dataclass
class CreateInput:
    provider: str
    manifest_json: str | None = None


@dataclass
class CreateOutput:
    sandbox: SandboxRef
    capabilities: list[str] = field(default_factory=list)
    durable_exec: bool = False


@dataclass
class StatusOutput:
    status: str
    """A ``SandboxStatus`` value, or "missing" when the sandbox no longer exists."""


@dataclass
class ExecInput:
    sandbox: SandboxRef
    exec_id: str
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdin_b64: str | None = None
    timeout: float | None = None
    wait_limit: float | None = None
    """Seconds to wait for the command; past it the result says ``pending`` and the command
    keeps running (a call with the same exec id collects it). None waits to the end."""
    output_limit: int | None = None
    """Bytes of stdout, and of stderr, returned at most (None: the worker's inline limits)."""


@dataclass
class ExecOutput:
    exit_code: int
    stdout_b64: str = ""
    stderr_b64: str = ""
    duration: float = 0.0
    truncated: bool = False
    stdout_size: int = 0
    stderr_size: int = 0
    resumed: bool = False
    """True when this result came from a run started by an earlier attempt."""
    timed_out: bool = False
    pending: bool = False
    """The command was still running at the input's ``wait_limit``; nothing else is set."""
    elsewhere: bool = False
    """(With ``pending``) nothing was started: the call reached a worker that cannot reach
    the sandbox (a local activity runs on the workflow's worker); send it to the sandbox's
    queue."""


@dataclass
class PathInput:
    sandbox: SandboxRef
    path: str


@dataclass
class ReadFileInput:
    sandbox: SandboxRef
    path: str
    limit: int = INLINE_LIMIT
    truncate: bool = False
    """Return the file's first ``limit`` bytes instead of failing when it is longer."""


@dataclass
class ReadFileOutput:
    data_b64: str
    size: int


@dataclass
class WriteFileInput:
    sandbox: SandboxRef
    path: str
    data_b64: str | None = None
    blob: BlobRef | None = None
    mode: int | None = None


@dataclass
class StageBytesInput:
    data_b64: str
    name: str = "blob"


@dataclass
class ListTreeInput:
    sandbox: SandboxRef
    path: str = "."
    limit: int = LIST_TREE_LIMIT


@dataclass
class EntryData:
    path: str
    type: str
    size: int
    mode: int
    mtime: float
    link_target: str | None = None


@dataclass
class ListTreeOutput:
    entries: list[EntryData]


@dataclass
class SnapshotInput:
    sandbox: SandboxRef
    parent: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class SnapshotOutput:
    snapshot_id: str
    files: int = 0
    logical_bytes: int = 0
    new_bytes: int = 0
    seconds: float = 0.0


@dataclass
class RestoreInput:
    sandbox: SandboxRef
    snapshot_id: str
    replace: bool = True
    base: str | None = None
    """A snapshot the sandbox holds exactly (the caller verifies afterwards): the delta is
    computed from the two snapshots, without listing the sandbox. None in older histories."""


@dataclass
class SnapshotDigestInput:
    snapshot_id: str


@dataclass
class RestoreOutput:
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class DigestOutput:
    digest: str
    files: int
    bytes: int


@dataclass
class FindIntactInput:
    snapshot_id: str
    follow_parents: bool = True
    """Walk the parent chain until a snapshot verifies (False: check only this one)."""
    limit: int = 100
    """Most snapshots checked."""


@dataclass
class DamagedCheckpoint:
    snapshot_id: str
    problem: str
    """The damaged store objects and what is wrong with them."""


@dataclass
class FindIntactOutput:
    intact: str | None
    """The full id of the newest snapshot that verifies, None when none does."""
    logical_bytes: int = 0
    damaged: list[DamagedCheckpoint] = field(default_factory=list)
    """The snapshots checked before it, each with what is wrong."""
