"""Start, list, message, fork, migrate, repair, rename and stop sessions: a thin Temporal
client.

Sessions are workflows; listing uses Temporal's visibility and each session's ``describe``
query. There is no database of our own. Every input is size-checked here, before it reaches
Temporal; a session's errors come back as the sandbank error they started as.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from sandbank.durable import types as t
from sandbank.durable.failures import from_failure
from sandbank.durable.session import (
    SESSION_WORKFLOW,
    MigrateRequest,
    MigrateResult,
    RepairRequest,
    RepairResult,
    SessionConfig,
    SessionEvent,
    SessionInfo,
    SessionState,
    SessionWorkflow,
    Step,
    ToolCallRecord,
    Turn,
    TurnResult,
    check_turn,
)
from sandbank.durable.worker import DEFAULT_TASK_QUEUE
from sandbank.errors import SandbankError
from sandbank.manifest import Manifest

__all__ = ["AgentTurnResult", "SessionManager"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AgentTurnResult:
    """One agent turn: the agent's answer, its tool calls, the checkpoint after it."""

    final_output: str
    tool_calls: list[ToolCallRecord]
    checkpoint: str | None
    turn: int
    seconds: float = 0.0
    recovered: bool = False
    """The sandbox was lost during the turn and rebuilt from the last checkpoint."""


class SessionManager:
    """Client-side control of sessions on one task queue.

    ``store``: the workers' snapshot store, if this client can open it; file content over
    the inline limit in a turn then travels through it instead of through Temporal.
    """

    def __init__(
        self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE, *, store: Any | None = None
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.store = store

    def handle(self, session_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(session_id)

    async def start(
        self,
        provider: str = "local",
        manifest: Manifest | dict[str, Any] | None = None,
        *,
        name: str = "",
        session_id: str | None = None,
        pause_after: float = 60.0,
        release_after: float = 600.0,
        destroy_after: float = 86400.0,
        worker_timeout: float = 30.0,
        continue_after_turns: int = 100,
        agent: str | None = None,
        model: str | None = None,
    ) -> str:
        """Start a session (its sandbox is created on the first message); returns its id.

        Idle tiers (seconds without a message): ``pause_after`` freezes the sandbox,
        ``release_after`` checkpoints it and stops it (or destroys it where the provider
        cannot stop), ``destroy_after`` destroys a stopped one. ``worker_timeout``: seconds
        a call waits for the worker that holds the sandbox; past it the sandbox is rebuilt
        from its last checkpoint on another worker. ``continue_after_turns``: turns per
        workflow run before it continues as new (bounded history). ``agent``: a registered
        agent that runs this session's prompts (``prompt``), on ``model`` if given; an agent
        no worker knows is refused here (``ConfigurationError``)."""
        session_id = session_id or f"session-{uuid.uuid4().hex[:10]}"
        manifest_json = Manifest.parse(manifest).to_json() if manifest is not None else None
        config = SessionConfig(
            provider=provider,
            manifest_json=manifest_json,
            name=name or session_id,
            pause_after=pause_after,
            release_after=release_after,
            destroy_after=destroy_after,
            worker_timeout=worker_timeout,
            continue_after_turns=continue_after_turns,
            agent=agent,
            model=model,
        )
        state = SessionState(config=config)
        self._check_size(
            "the session's start state (its manifest)", state,
            "name big files in the manifest by host path, URL or git instead of inline text",
        )  # fmt: skip
        await self.client.start_workflow(
            SessionWorkflow.run,
            state,
            id=session_id,
            task_queue=self.task_queue,
        )
        if agent:
            await self._update(session_id, SessionWorkflow.check_agent, None, type(None))
        return session_id

    async def prompt(
        self, session_id: str, text: str, attachments: dict[str, str] | None = None
    ) -> AgentTurnResult:
        """Run one agent turn on ``text`` (``attachments``: small files, path to text, written
        into the workspace first). A turn that failed (say its model raised) raises its
        error; the session keeps serving."""
        steps = [Step("write", path=p, content=c) for p, c in (attachments or {}).items()]
        result = await self.send(session_id, Turn(steps=steps, message=text, handler="agent"))
        if result.error_type:
            raise _SessionError(
                f"session {session_id}: agent turn {result.turn} failed "
                f"({result.error_type}): {result.error}"
            )
        return AgentTurnResult(
            final_output=result.reply, tool_calls=result.tool_calls,
            checkpoint=result.checkpoint, turn=result.turn, seconds=result.seconds,
            recovered=result.recovered,
        )  # fmt: skip

    async def send(self, session_id: str, turn: Turn) -> TurnResult:
        """Run a turn and return its result. Oversized parts fail here with
        ``PayloadTooLarge`` (big file content goes through ``store`` when there is one); a
        session whose checkpoint cannot be restored raises the store's error (say
        ``CorruptObject``), then ``SessionDamaged`` until ``repair``."""
        turn = await self._stage(turn)
        check_turn(turn)
        self._check_size(
            "the turn", turn,
            "send fewer or smaller steps per turn; big file content goes through the "
            "snapshot store (SessionManager(..., store=))",
        )  # fmt: skip
        return await self._update(session_id, SessionWorkflow.send, turn, TurnResult)

    async def repair(self, session_id: str, *, to: str | None = None) -> RepairResult:
        """Roll a session back to its newest checkpoint that verifies (or to snapshot
        ``to``), clearing its damage; the result says which turns the rollback loses."""
        request = RepairRequest(to)
        return await self._update(session_id, SessionWorkflow.repair, request, RepairResult)

    async def fork(self, session_id: str, new_session_id: str | None = None) -> str:
        new_id = new_session_id or f"{session_id}-fork-{uuid.uuid4().hex[:6]}"
        result: str = await self._update(session_id, SessionWorkflow.fork, new_id, str)
        return result

    async def migrate(
        self, session_id: str, provider: str, manifest_overrides: dict[str, Any] | None = None
    ) -> MigrateResult:
        request = MigrateRequest(
            provider, json.dumps(manifest_overrides) if manifest_overrides else None
        )
        self._check_size("the migration's manifest overrides", request, "send smaller overrides")
        return await self._update(session_id, SessionWorkflow.migrate, request, MigrateResult)

    async def rename(self, session_id: str, name: str) -> None:
        await self.handle(session_id).execute_update(SessionWorkflow.rename, name)

    async def stop(self, session_id: str) -> SessionInfo:
        return await self._update(session_id, SessionWorkflow.stop, None, SessionInfo)

    async def describe(self, session_id: str) -> SessionInfo:
        return await self.handle(session_id).query(SessionWorkflow.describe)

    async def history(self, session_id: str, limit: int = 0) -> list[SessionEvent]:
        return await self.handle(session_id).query(SessionWorkflow.history, limit)

    async def list(self, *, running_only: bool = True) -> list[SessionInfo]:
        """Sessions known to Temporal's visibility, described by their own query."""
        query = f'WorkflowType = "{SESSION_WORKFLOW}" AND TaskQueue = "{self.task_queue}"'
        if running_only:
            query += ' AND ExecutionStatus = "Running"'
        infos: list[SessionInfo] = []
        async for execution in self.client.list_workflows(query):
            try:
                infos.append(await self.describe(execution.id))
            except RPCError as exc:
                log.debug("cannot describe %s: %s", execution.id, exc)
        return infos

    async def _stage(self, turn: Turn) -> Turn:
        """The turn with each file content over the inline limit staged in the store."""
        if self.store is None:
            return turn
        from sandbank.durable.activities import save_blob

        steps = []
        for step in turn.steps:
            data = step.content.encode() if step.content is not None else b""
            if step.kind == "write" and len(data) > t.INLINE_LIMIT:
                name = (step.path or "blob").rsplit("/", 1)[-1]
                blob = await save_blob(self.store, data, name)
                step = dataclasses.replace(step, content=None, blob=blob)
            steps.append(step)
        return dataclasses.replace(turn, steps=steps)

    def _check_size(self, what: str, value: Any, hint: str) -> None:
        payloads = self.client.data_converter.payload_converter.to_payloads([value])
        size = sum(p.ByteSize() for p in payloads)
        if size > t.MESSAGE_LIMIT:
            raise t.PayloadTooLarge(what, size, t.MESSAGE_LIMIT, hint=hint)

    async def _update(self, session_id: str, update: Any, arg: Any, result_type: type) -> Any:
        handle = self.handle(session_id)
        try:
            if arg is None:
                return await handle.execute_update(update, result_type=result_type)
            return await handle.execute_update(update, arg, result_type=result_type)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            typed = from_failure(cause) if cause is not None else exc
            if isinstance(typed, SandbankError):
                raise typed from exc
            message = getattr(cause, "message", None) or str(cause or exc)
            raise _SessionError(f"session {session_id}: {message}") from exc


class _SessionError(SandbankError):
    """A session rejected or failed a request; the message says why."""
