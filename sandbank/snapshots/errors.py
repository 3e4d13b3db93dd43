"""Errors of the snapshot store, all under ``sandbank.errors.SnapshotError``.

SnapshotError
├── StoreNotFound        no store at the URL (and create=False), or its bucket is missing
├── StoreUnavailable     the store cannot be reached or refused access (retryable)
├── StoreFormatError     not a snapshot store, or a format version this code cannot read
├── WrongKey             the encryption key does not match the store (or is missing)
├── SnapshotNotFound     no snapshot with this id (or an ambiguous prefix)
├── CorruptObject        an object fails its checksum or authentication
│   └── MissingObject    an object the store needs is gone
├── TargetNotEmpty       restore target has files and the policy is "fail"
└── SourceChanged        the workspace changed under the snapshot (retryable)
"""

from __future__ import annotations

from sandbank.errors import SnapshotError

__all__ = [
    "CorruptObject",
    "MissingObject",
    "SnapshotError",
    "SnapshotNotFound",
    "SourceChanged",
    "StoreFormatError",
    "StoreNotFound",
    "StoreUnavailable",
    "TargetNotEmpty",
    "WrongKey",
]


class StoreNotFound(SnapshotError):
    """Nothing (no store, no bucket, no directory) at the URL."""

    def __init__(self, url: str, detail: str = "", hint: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        hint = hint or "check the URL, or open it with create=True to create one"
        super().__init__(f"no snapshot store at {url!r}{extra}; {hint}")
        self.url = url


class StoreUnavailable(SnapshotError):
    """The store did not answer, or refused the credentials; retrying may help."""

    retryable = True

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            f"snapshot store {url!r} is unavailable: {detail}; check the endpoint, network and "
            f"credentials (storage_options), then retry"
        )
        self.url = url


class StoreFormatError(SnapshotError):
    """The location is not a snapshot store, or uses a format this version cannot read."""


class WrongKey(SnapshotError):
    """The encryption key does not open this store (or a key is needed and none was given)."""


class SnapshotNotFound(SnapshotError):
    def __init__(self, snapshot_id: str, detail: str = "no such snapshot") -> None:
        super().__init__(
            f"snapshot {snapshot_id!r}: {detail}; list snapshots with store.list() "
            f"(`sandbank snapshot ls --store URL`)"
        )
        self.snapshot_id = snapshot_id


class CorruptObject(SnapshotError):
    """An object fails its checksum or authentication; ``object`` names it, ``detail`` says how."""

    def __init__(self, obj: str, detail: str) -> None:
        super().__init__(
            f"store object {obj!r} is corrupt: {detail}; run store.verify() "
            f"(`sandbank snapshot verify`) to see the affected snapshots"
        )
        self.object = obj
        self.detail = detail


class MissingObject(CorruptObject):
    """An object that a snapshot references is gone from the store."""

    def __init__(self, obj: str, detail: str = "it is missing from the store") -> None:
        SnapshotError.__init__(
            self,
            f"store object {obj!r}: {detail}; run store.verify() "
            f"(`sandbank snapshot verify`) to see the affected snapshots",
        )
        self.object = obj
        self.detail = detail


class TargetNotEmpty(SnapshotError):
    def __init__(self, target: str) -> None:
        super().__init__(
            f"restore target {target} is not empty; restore into an empty workspace, or pass "
            f'if_not_empty="replace" to make it exactly the snapshot (removing other files)'
        )
        self.target = target


class SourceChanged(SnapshotError):
    """The workspace changed while it was being snapshotted; nothing was committed."""

    retryable = True

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"workspace path {path!r} changed during the snapshot ({detail}); nothing was "
            f"committed: retry the snapshot, ideally while the workspace is idle"
        )
        self.path = path
