"""The session workflow: a long-lived sandbox conversation that survives crashes and idles free.

Messages arrive by update (``send``) or signal (``post``) and run one at a time as turns
against a ``WorkflowSandbox``. Each turn ends with an incremental checkpoint. Idle sessions
pause, then release their sandbox (checkpoint and destroy) and rehydrate on the next
message; a lost sandbox is rebuilt from the last checkpoint and the turn retried. Sessions
fork (child workflow, isolated workspace) and migrate between providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from sandbank.durable import types as t
    from sandbank.durable.failures import to_application_error
    from sandbank.durable.workflow_sandbox import (
        ActivityOptions,
        WorkflowSandbox,
        command_size,
        find_intact,
    )
    from sandbank.errors import (
        ConfigurationError,
        SandbankError,
        SandboxLost,
        SandboxNotFound,
        SnapshotError,
    )

__all__ = [
    "SESSION_WORKFLOW",
    "CheckpointMark",
    "MigrateRequest",
    "MigrateResult",
    "RepairRequest",
    "RepairResult",
    "SessionConfig",
    "SessionEvent",
    "SessionInfo",
    "SessionState",
    "SessionWorkflow",
    "Step",
    "StepResult",
    "Turn",
    "TurnHandler",
    "TurnOutcome",
    "TurnResult",
    "check_turn",
    "register_turn_handler",
]

SESSION_WORKFLOW = "SandbankSession"
STEP_OUTPUT_LIMIT = 64 * 1024
"""Characters of a step's output returned to the sender (the rest stays in the sandbox)."""
TURN_OUTPUT_LIMIT = 512 * 1024
"""Encoded bytes of all the output, reply and error text one turn returns (a reply over
Temporal's 2 MB payload limit would fail the session's workflow task)."""
MAX_STEPS = 1000
"""Steps one turn may have."""
EVENT_DETAIL_LIMIT = 2000
"""Characters of an event's detail kept in the session's history."""
FULL_VERIFY_LIMIT = 64 * 1024 * 1024
"""A migration compares workspace contents up to this size; above it, listings (paths,
types, modes, sizes), which keeps the cut-over short (the delta itself is restored from a
content-addressed checkpoint)."""
_IDLE_LOSS_PATCH = "sandbank-lost-while-idle"
_CONTINUE_PATCH = "sandbank-continue-after-last-reply"
_MIGRATE_DELTA_PATCH = "sandbank-migrate-delta-from-base"
_TURN_CHECKPOINT_PATCH = "sandbank-turn-retried-when-checkpoint-loses-sandbox"
_REAP_PATCH = "sandbank-reap-abandoned-sandboxes"
_RESTORE_FAILURE_PATCH = "sandbank-failed-restore-leaves-sandbox-unused"
_CHECKPOINT_MARKS = 100
"""Checkpoints a session remembers the turn of (to say what a repair rolls back)."""
_REAP_WAIT = timedelta(days=7)
"""How long the destroy of an abandoned sandbox waits for its worker to come back."""
_TIER_DEPTH = {"none": 0, "running": 0, "paused": 1, "stopped": 2, "released": 3, "damaged": 3}


@dataclass
class Step:
    """One action of a turn: ``exec`` (cmd), ``write`` (path, content or blob), ``read``,
    ``remove``, ``mkdir`` (path). ``SessionManager`` moves big content into ``blob``."""

    kind: str
    cmd: str | list[str] | None = None
    path: str | None = None
    content: str | None = None
    mode: int | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout: float | None = None
    blob: t.BlobRef | None = None
    """Content staged in the snapshot store (instead of ``content``)."""


@dataclass
class Turn:
    """A message to the session. ``handler`` names the code that runs it."""

    steps: list[Step] = field(default_factory=list)
    message: str = ""
    handler: str = "steps"


@dataclass
class StepResult:
    kind: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    content: str | None = None
    truncated: bool = False
    """Output was cut to keep the turn's reply within ``TURN_OUTPUT_LIMIT``."""


@dataclass
class ToolCallRecord:
    """One tool call of an agent turn."""

    name: str
    summary: str = ""
    """Its arguments, cut short."""
    exit_code: int | None = None
    """The exit code of the last command it ran (None: it ran none)."""
    seconds: float = 0.0


@dataclass
class TurnOutcome:
    """What a turn handler returns."""

    steps: list[StepResult] = field(default_factory=list)
    reply: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)


@dataclass
class TurnResult:
    turn: int
    steps: list[StepResult] = field(default_factory=list)
    reply: str = ""
    checkpoint: str | None = None
    recovered: bool = False
    error_type: str | None = None
    error: str | None = None
    seconds: float = 0.0
    tool_calls: list[ToolCallRecord] = field(default_factory=list)


@dataclass
class SessionEvent:
    at: float
    kind: str
    detail: str = ""


@dataclass
class SessionConfig:
    provider: str = "local"
    manifest_json: str | None = None
    name: str = ""
    pause_after: float = 60.0
    """Idle seconds before the sandbox is paused (where the provider can pause): no CPU,
    memory kept, instant wake."""
    release_after: float = 600.0
    """Idle seconds before the sandbox gives up its CPU and memory: checkpointed, then
    stopped where the provider can (its disk kept, so waking skips the restore), else
    destroyed (only the checkpoint remains; the next message rehydrates from it)."""
    destroy_after: float = 86400.0
    """Idle seconds before a stopped sandbox is destroyed too, leaving only its checkpoint."""
    max_events: int = 200
    continue_after_turns: int = 100
    """Turns per workflow run before continue-as-new (history stays bounded). The session
    id, workspace, sandbox, turn count and events carry over; the run id changes."""
    worker_timeout: float = 30.0
    """Seconds a call waits for the worker holding the sandbox to pick it up; past it that
    worker counts as gone, and the sandbox is rebuilt from the last checkpoint elsewhere."""
    agent: str | None = None
    """The registered agent whose prompts this session runs (``sandbank.durable.agents``)."""
    model: str | None = None
    """The model name the agent's factory is given."""


@dataclass
class CheckpointMark:
    snapshot_id: str
    turn: int
    """The number of turns the workspace had seen when it was checkpointed."""
    rolled_back_at: int | None = None
    """Set when a repair made this checkpoint the workspace again: the session's turn count
    then (the turns in between were lost by that repair, not by a later one)."""
    conversation: t.BlobRef | None = None
    """An agent session's conversation when this checkpoint was taken (they go together)."""


@dataclass
class SessionState:
    """Everything a session carries across continue-as-new: small, no file contents."""

    config: SessionConfig = field(default_factory=SessionConfig)
    sandbox: t.SandboxRef | None = None
    capabilities: list[str] = field(default_factory=list)
    sandbox_state: str = "none"
    """none, running, paused, stopped or released."""
    checkpoint: str | None = None
    checkpoint_bytes: int = 0
    """Logical size of the workspace at the last checkpoint."""
    dirty: bool = False
    turns: int = 0
    events: list[SessionEvent] = field(default_factory=list)
    last_activity: float = 0.0
    forked_from: str | None = None
    stopped: bool = False
    abandoned: list[t.SandboxRef] = field(default_factory=list)
    """Sandboxes left on workers that stopped answering, destroyed if those come back."""
    damaged: str | None = None
    """Why the checkpoint cannot be restored (it names the damaged object); turns are
    refused until a repair."""
    checkpoints: list[CheckpointMark] = field(default_factory=list)
    """The latest checkpoints with the turn each one follows."""
    conversation: t.BlobRef | None = None
    """An agent session's conversation so far, in the snapshot store (one blob per turn)."""


@dataclass
class SessionInfo:
    session_id: str
    name: str
    provider: str
    sandbox_state: str
    sandbox_id: str | None
    checkpoint: str | None
    turns: int
    last_activity: float
    forked_from: str | None
    stopped: bool
    migrating: bool = False
    damaged: str | None = None
    """Set when the checkpoint cannot be restored: why, naming the damaged object."""
    agent: str | None = None
    """The agent that runs this session's prompts (None: a session of commands)."""


@dataclass
class MigrateRequest:
    provider: str
    manifest_overrides_json: str | None = None


@dataclass
class MigrateResult:
    provider: str
    sandbox_id: str
    checkpoint: str | None
    downtime: float
    total: float
    verified: bool
    verification: str = "contents"
    """What was compared: "contents" (every byte) or "listing" (big workspaces)."""


@dataclass
class RepairRequest:
    to: str | None = None
    """A snapshot to roll back to (it must verify); None: the newest checkpoint that does."""


@dataclass
class RepairResult:
    session_id: str
    checkpoint: str | None
    """The checkpoint the session now rehydrates from."""
    previous: str | None
    rolled_back: bool
    checkpoint_turn: int | None = None
    """How many turns the workspace of ``checkpoint`` had seen (None: not remembered)."""
    lost_turns: list[int] | None = None
    """The turns whose changes the rollback drops (None: not known)."""
    damaged: list[t.DamagedCheckpoint] = field(default_factory=list)
    """The checkpoints passed over, each with what is wrong with it."""
    message: str = ""


TurnHandler = Callable[[WorkflowSandbox, Turn], Awaitable[TurnOutcome]]
_HANDLERS: dict[str, TurnHandler] = {}


def register_turn_handler(name: str, handler: TurnHandler) -> None:
    """Make ``handler`` available to turns whose ``handler`` field is ``name``."""
    _HANDLERS[name] = handler


def _clip(data: bytes) -> str:
    return data[:STEP_OUTPUT_LIMIT].decode("utf-8", "replace")


async def run_steps(box: WorkflowSandbox, turn: Turn) -> TurnOutcome:
    """The built-in handler: run the turn's commands and file edits in order.

    Each step returns up to ``STEP_OUTPUT_LIMIT`` bytes of output, and the turn as a whole
    about half of ``TURN_OUTPUT_LIMIT``: later steps' output is cut (``truncated``), so
    neither the reply nor the workflow's history grows with what the commands print."""
    results: list[StepResult] = []
    budget = TURN_OUTPUT_LIMIT // 2
    for step in turn.steps:
        limit = max(min(STEP_OUTPUT_LIMIT, budget), 0)
        if step.kind == "exec":
            if step.cmd is None:
                raise ConfigurationError("an exec step needs cmd")
            res = await box.exec(
                step.cmd, cwd=step.cwd, env=step.env, timeout=step.timeout, output_limit=limit
            )
            budget -= len(res.stdout) + len(res.stderr)
            out, err = _clip(res.stdout), _clip(res.stderr)
            results.append(StepResult("exec", res.exit_code, out, err, truncated=res.truncated))
        elif step.kind == "write":
            await box.write_file(_path(step), step.blob or step.content or "", step.mode)
            results.append(StepResult("write"))
        elif step.kind == "read":
            data, size = await box.read_head(_path(step), limit)
            budget -= len(data)
            results.append(StepResult("read", content=_clip(data), truncated=size > len(data)))
        elif step.kind == "remove":
            await box.remove(_path(step))
            results.append(StepResult("remove"))
        elif step.kind == "mkdir":
            await box.mkdir(_path(step))
            results.append(StepResult("mkdir"))
        else:
            raise ConfigurationError(
                f"unknown step kind {step.kind!r}; use exec, write, read, remove or mkdir"
            )
    return TurnOutcome(steps=results)


def _path(step: Step) -> str:
    if not step.path:
        raise ConfigurationError(f"a {step.kind} step needs a path")
    return step.path


register_turn_handler("steps", run_steps)


def _encoded(text: str) -> int:
    return len(json.dumps(text))


def _cut(text: str, budget: int) -> str:
    """The longest prefix of ``text`` (roughly) whose JSON encoding fits ``budget`` bytes."""
    keep = text
    while keep and _encoded(keep) > budget:
        keep = keep[: max(len(keep) * budget // _encoded(keep) - 1, 0)]
    return keep


def _bound_output(result: TurnResult, budget: int = TURN_OUTPUT_LIMIT) -> None:
    """Cut the text a turn returns (error, reply, then each step's output in order) to
    ``budget`` encoded bytes in all; a step that lost output says ``truncated``."""
    result.error = _cut(result.error, 4096) if result.error else result.error
    budget -= _encoded(result.error or "")
    result.reply = _cut(result.reply, budget)
    budget -= _encoded(result.reply)
    for step in result.steps:
        for name in ("stdout", "stderr", "content"):
            text = getattr(step, name)
            if text:
                kept = _cut(text, max(budget, 0))
                budget -= _encoded(kept)
                if len(kept) < len(text):
                    setattr(step, name, kept)
                    step.truncated = True


def _malformed(exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"the turn is malformed ({type(exc).__name__}: {exc}); send steps as "
        f"sandbank.durable.session.Step (cmd a string or list of strings, env str to str)"
    )


def check_turn(turn: Turn) -> None:
    """``PayloadTooLarge`` for a part of a turn that cannot travel through a workflow call:
    a command line or environment over the inline limit, or inline file content over the
    message limit (``SessionManager`` stages such content in the store)."""
    if len(turn.steps) > MAX_STEPS:
        raise ConfigurationError(
            f"a turn has at most {MAX_STEPS} steps, this one {len(turn.steps)}; "
            f"split it into several turns"
        )
    for number, step in enumerate(turn.steps, 1):
        if step.cmd is not None or step.env:
            argv = [step.cmd] if isinstance(step.cmd, str) else list(step.cmd or [])
            size = command_size(argv, step.env)
            if size > t.INLINE_LIMIT:
                what = f"the command line and environment of step {number}"
                raise t.PayloadTooLarge(what, size, hint=t.ARGV_HINT)
        if step.content is not None:
            size = len(step.content.encode("utf-8", "surrogatepass"))
            if size > t.MESSAGE_LIMIT:
                raise t.PayloadTooLarge(
                    f"the content of step {number} ({step.path})", size, t.MESSAGE_LIMIT,
                    hint="send it through the snapshot store: SessionManager(..., store=) "
                    "stages it there by itself",
                )  # fmt: skip
    size = len(turn.message.encode("utf-8", "surrogatepass"))
    if size > t.MESSAGE_LIMIT:
        raise t.PayloadTooLarge(
            "the turn's message", size, t.MESSAGE_LIMIT,
            hint="put the text in a file of the workspace and name the file in the message",
        )  # fmt: skip


_PENDING = object()
"""An op whose result arrives later (a migration finishing after its copy)."""


@dataclass
class _Op:
    id: int
    kind: str
    arg: Any = None


@workflow.defn(name=SESSION_WORKFLOW)
class SessionWorkflow:
    """One agent session; its id is the workflow id."""

    @workflow.init
    def __init__(self, state: SessionState) -> None:
        self.state = state
        self._ops: list[_Op] = []
        self._results: dict[int, Any] = {}
        self._next_op = 0
        self._turns_this_run = 0
        self._migration: asyncio.Task[None] | None = None
        self._cleanup: list[asyncio.Task[None]] = []
        self._reaps: list[asyncio.Task[None]] = []
        self._box: WorkflowSandbox | None = None
        self._no_store = False

    # -- messages ---------------------------------------------------------------------------

    async def _submit(self, kind: str, arg: Any = None) -> Any:
        self._next_op += 1
        op = _Op(self._next_op, kind, arg)
        self._ops.append(op)
        await workflow.wait_condition(lambda: op.id in self._results)
        result = self._results.pop(op.id)
        if isinstance(result, SandbankError):
            raise to_application_error(result, non_retryable=True)
        if isinstance(result, FailureError):
            raise ApplicationError(str(result), type=type(result).__name__, non_retryable=True)
        return result

    def _accepting(self, *_: Any) -> None:
        if self.state.stopped:
            raise RuntimeError("the session is stopped; start or fork a new one")
        if self.state.damaged:
            raise to_application_error(self._damaged_error(), non_retryable=True)

    def _damaged_error(self) -> t.SessionDamaged:
        return t.SessionDamaged(workflow.info().workflow_id, self.state.damaged or "")

    @workflow.update
    async def send(self, turn: Turn) -> TurnResult:
        """Run a turn and return its result."""
        result: TurnResult = await self._submit("turn", turn)
        return result

    @send.validator
    def _validate_send(self, turn: Turn) -> None:
        self._accepting()
        try:
            check_turn(turn)
        except ConfigurationError as exc:
            raise to_application_error(exc) from None
        except Exception as exc:  # malformed input, refused before it is accepted
            raise to_application_error(_malformed(exc)) from None

    @workflow.signal
    def post(self, turn: Turn) -> None:
        """Queue a turn without waiting for it (its summary lands in the history)."""
        if self.state.stopped:
            return
        try:
            check_turn(turn)
            self._accepting()
        except (ConfigurationError, ApplicationError) as exc:
            self._event("turn_refused", str(exc))
            return
        except Exception as exc:  # malformed input must not fail the task
            self._event("turn_refused", str(_malformed(exc)))
            return
        self._next_op += 1
        self._ops.append(_Op(self._next_op, "turn", turn))

    @workflow.update
    async def fork(self, new_session_id: str) -> str:
        """Start an isolated copy of this session from a fresh checkpoint; returns its id."""
        result: str = await self._submit("fork", new_session_id)
        return result

    @fork.validator
    def _validate_fork(self, new_session_id: str) -> None:
        self._accepting()

    @workflow.update
    async def migrate(self, request: MigrateRequest) -> MigrateResult:
        result: MigrateResult = await self._submit("migrate", request)
        return result

    @migrate.validator
    def _validate_migrate(self, request: MigrateRequest) -> None:
        self._accepting()

    @workflow.update
    async def checkpoint(self) -> str | None:
        result: str | None = await self._submit("checkpoint")
        return result

    @checkpoint.validator
    def _validate_checkpoint(self) -> None:
        self._accepting()

    @workflow.update
    async def repair(self, request: RepairRequest) -> RepairResult:
        """Roll back to the newest checkpoint that verifies (or ``request.to``)."""
        result: RepairResult = await self._submit("repair", request)
        return result

    @repair.validator
    def _validate_repair(self, request: RepairRequest) -> None:
        if self.state.stopped:
            raise RuntimeError("the session is stopped; start or fork a new one")

    @workflow.update
    def check_agent(self) -> None:
        """Refuse a session whose agent no worker registered (the session keeps serving)."""
        if self.state.config.agent:
            from sandbank.durable.agents import check_agent

            try:
                check_agent(self.state.config.agent)
            except ConfigurationError as exc:
                self._event("error", str(exc))
                raise to_application_error(exc, non_retryable=True) from None

    @workflow.update
    def rename(self, name: str) -> None:
        self.state.config.name = name
        self._event("renamed", name)

    @workflow.update
    async def stop(self) -> SessionInfo:
        """Checkpoint, destroy the sandbox and end the session."""
        await self._submit("stop")
        return self.describe()

    @workflow.query
    def describe(self) -> SessionInfo:
        s = self.state
        return SessionInfo(
            session_id=workflow.info().workflow_id,
            name=s.config.name,
            provider=s.config.provider,
            sandbox_state=s.sandbox_state,
            sandbox_id=s.sandbox.sandbox_id if s.sandbox else None,
            checkpoint=s.checkpoint,
            turns=s.turns,
            last_activity=s.last_activity,
            forked_from=s.forked_from,
            stopped=s.stopped,
            migrating=self._migration is not None,
            damaged=s.damaged,
            agent=s.config.agent,
        )

    @workflow.query
    def history(self, limit: int = 0) -> list[SessionEvent]:
        return self.state.events[-limit:] if limit else list(self.state.events)

    # -- main loop --------------------------------------------------------------------------

    @workflow.run
    async def run(self, state: SessionState) -> SessionInfo:
        if not self.state.last_activity:
            self.state.last_activity = workflow.time()
        if self.state.sandbox is not None:
            self._box = WorkflowSandbox(
                self.state.sandbox, capabilities=self.state.capabilities, options=self._options()
            )
        for ref in self.state.abandoned:
            self._reaps.append(asyncio.create_task(self._reap(ref)))
        # The run continues as new once a turn's reply has gone out (the send handler ends
        # after the loop stores its result), not only when the next message or idle step
        # wakes the loop. Runs started before this replay without it.
        continue_when_due = workflow.patched(_CONTINUE_PATCH)
        while True:
            if self._ops:
                op = self._ops.pop(0)
                try:
                    result = await self._do(op)
                except (SandbankError, FailureError) as exc:
                    self._event("error", f"{op.kind}: {type(exc).__name__}: {exc}")
                    result = exc
                except Exception as exc:  # a bad request must not wedge the task
                    workflow.logger.exception("session op %s failed", op.kind)
                    result = SandbankError(
                        f"{op.kind} failed inside the session: {type(exc).__name__}: {exc}; "
                        f"the session keeps serving (check the request, or report this)"
                    )
                    self._event("error", f"{op.kind}: {result}")
                if result is not _PENDING:
                    self._results[op.id] = result
                if op.kind in ("turn", "migrate_finish"):
                    self.state.last_activity = workflow.time()
                continue
            if self.state.stopped:
                break
            if self._should_continue():
                workflow.continue_as_new(self.state)
            timeout = self._idle_timeout()
            try:
                await workflow.wait_condition(
                    lambda: (
                        bool(self._ops)
                        or self.state.stopped
                        or (continue_when_due and self._should_continue())
                    ),
                    timeout=timedelta(seconds=timeout) if timeout is not None else None,
                )
            except TimeoutError:
                await self._idle_step()
        await asyncio.gather(*self._cleanup)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.describe()

    def _options(self) -> ActivityOptions:
        return ActivityOptions(worker_timeout=timedelta(seconds=self.state.config.worker_timeout))

    def _should_continue(self) -> bool:
        if self._migration is not None or not workflow.all_handlers_finished():
            return False
        if any(not task.done() for task in self._cleanup):
            return False
        return (
            self._turns_this_run >= self.state.config.continue_after_turns
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _do(self, op: _Op) -> Any:
        if op.kind == "turn":
            return await self._turn(op.arg)
        if op.kind == "checkpoint":
            return await self._checkpoint(force=True)
        if op.kind == "fork":
            return await self._fork(op.arg)
        if op.kind == "migrate":
            return await self._migrate(op)
        if op.kind == "migrate_finish":
            return await self._migrate_finish(op.arg)
        if op.kind == "repair":
            return await self._repair(op.arg)
        if op.kind == "stop":
            await self._release()
            self.state.stopped = True
            self._event("stopped")
            for ref in self.state.abandoned:  # the session ends; nothing waits for them now
                self._event("abandoned_left", f"{ref.sandbox_id} on {ref.task_queue}")
            return None
        raise AssertionError(op.kind)

    def _event(self, kind: str, detail: str = "") -> None:
        events = self.state.events
        if len(detail) > EVENT_DETAIL_LIMIT:
            detail = detail[: EVENT_DETAIL_LIMIT - 1] + "…"
        events.append(SessionEvent(workflow.time(), kind, detail))
        if len(events) > self.state.config.max_events:
            del events[: len(events) - self.state.config.max_events]
        workflow.logger.info("session event %s %s", kind, detail)

    # -- turns ------------------------------------------------------------------------------

    async def _turn(self, turn: Turn) -> TurnResult:
        if self.state.damaged:  # queued before the damage showed
            raise self._damaged_error()
        started = workflow.time()
        self.state.turns += 1
        self._turns_this_run += 1
        number = self.state.turns
        result = TurnResult(turn=number)
        handler = _HANDLERS.get(turn.handler)
        if handler is None:
            result.error_type = "ConfigurationError"
            result.error = f"no turn handler {turn.handler!r} (known: {sorted(_HANDLERS)})"
            return result
        # A sandbox lost before its turn is checkpointed takes the turn's changes with it:
        # the turn runs again on a sandbox rebuilt from the last checkpoint.
        checkpoint_in_turn = workflow.patched(_TURN_CHECKPOINT_PATCH)
        checkpointed = False
        for attempt in range(3):
            try:
                box = await self._ensure_live()
                self.state.dirty = True
                outcome = await handler(box, turn)
                result.steps, result.reply = outcome.steps, outcome.reply
                result.tool_calls = outcome.tool_calls
                if checkpoint_in_turn:
                    result.checkpoint = await self._turn_checkpoint(raise_lost=True)
                    checkpointed = True
                break
            except (SandboxLost, SandboxNotFound, t.ExecInterrupted) as exc:
                if isinstance(exc, t.ExecInterrupted) and await self._sandbox_alive():
                    result.error_type, result.error = type(exc).__name__, str(exc)
                    break
                self._event("sandbox_lost", f"turn {number}: {exc}")
                await self._forget_sandbox(reachable=not isinstance(exc, t.SandboxUnreachable))
                result.recovered = True
                if attempt == 2:
                    result.error_type, result.error = type(exc).__name__, str(exc)
            except (SandbankError, FailureError) as exc:
                if self.state.damaged:  # the checkpoint cannot be restored: nothing ran
                    self.state.turns -= 1
                    self._turns_this_run -= 1
                    raise
                result.error_type, result.error = type(exc).__name__, str(exc)
                break
        if not checkpointed:
            result.checkpoint = await self._turn_checkpoint(raise_lost=False)
        _bound_output(result)
        result.seconds = workflow.time() - started
        codes = [s.exit_code for s in result.steps if s.exit_code is not None]
        calls = "; ".join(f"{c.name}({c.summary}) -> {c.exit_code}" for c in result.tool_calls)
        self._event(
            "turn",
            f"{number}: {len(result.steps)} steps, exit codes {codes}"
            + (f", tool calls: {calls}" if result.tool_calls else "")
            + (f", error {result.error_type}" if result.error_type else "")
            + (", recovered" if result.recovered else ""),
        )
        return result

    async def _turn_checkpoint(self, *, raise_lost: bool) -> str | None:
        """The checkpoint after a turn. A failure is recorded, not raised, unless the
        sandbox was lost and ``raise_lost`` (the turn is then run again)."""
        try:
            return await self._checkpoint()
        except (SandbankError, FailureError) as exc:
            if raise_lost and isinstance(exc, (SandboxLost, SandboxNotFound)):
                raise
            self._event("checkpoint_failed", f"{type(exc).__name__}: {exc}")
            return None

    async def _sandbox_alive(self) -> bool:
        if self._box is None:
            return False
        try:
            return await self._box.status() not in ("missing", "lost", "stopped")
        except t.SandboxUnreachable:
            return False

    async def _ensure_live(self) -> WorkflowSandbox:
        s = self.state
        if self._box is not None and s.sandbox_state == "running":
            return self._box
        if self._box is not None and s.sandbox_state in ("paused", "stopped"):
            started = workflow.time()
            await self._box.resume()
            s.sandbox_state, was = "running", s.sandbox_state
            self._event("resumed", f"from {was} in {workflow.time() - started:.2f}s")
            return self._box
        started = workflow.time()
        box = await WorkflowSandbox.create(
            s.config.provider, s.config.manifest_json, options=self._options()
        )
        if s.checkpoint and workflow.patched(_RESTORE_FAILURE_PATCH):
            # The sandbox becomes the session's only once its restore succeeded: a partial
            # restore is destroyed, never used or checkpointed.
            try:
                await box.restore(s.checkpoint)
            except (SandbankError, FailureError) as exc:
                await self._restore_failed(box, exc)
                raise
            self._box, s.sandbox, s.capabilities = box, box.ref, box.capabilities
            s.sandbox_state = "running"
            self._event(
                "rehydrated",
                f"{box.id} from {s.checkpoint} in {workflow.time() - started:.2f}s",
            )
            return box
        self._box, s.sandbox, s.capabilities = box, box.ref, box.capabilities
        s.sandbox_state = "running"
        if s.checkpoint:
            await box.restore(s.checkpoint)
            self._event(
                "rehydrated",
                f"{box.id} from {s.checkpoint} in {workflow.time() - started:.2f}s",
            )
        else:
            self._event("created", box.id)
        return box

    async def _restore_failed(self, box: WorkflowSandbox, exc: BaseException) -> None:
        """Destroy a sandbox whose restore failed; a checkpoint the store cannot give back
        (corrupt or missing objects) makes the session damaged."""
        s = self.state
        self._box, s.sandbox = box, box.ref
        await self._forget_sandbox(reachable=not isinstance(exc, t.SandboxUnreachable))
        if isinstance(exc, SnapshotError) and not exc.retryable:
            damaged = getattr(exc, "object", None)
            s.damaged = (
                f"checkpoint {s.checkpoint} cannot be restored"
                + (f" (damaged store object {damaged})" if damaged else "")
                + f": {type(exc).__name__}: {exc}"
            )
            s.sandbox_state = "damaged"
            self._event("damaged", s.damaged)
        elif s.checkpoint:
            s.sandbox_state = "released"
            self._event("restore_failed", f"{box.id} from {s.checkpoint}: {type(exc).__name__}")

    async def _forget_sandbox(self, reachable: bool = True) -> None:
        """Drop the sandbox: destroyed where its worker can still be reached, else left
        (its worker is gone; a destroy would only wait for it again) and recorded."""
        if self._box is not None:
            if reachable:
                with contextlib.suppress(SandbankError):
                    await self._box.destroy()
            else:
                self._event(
                    "sandbox_abandoned",
                    f"{self._box.id} on {self._box.ref.task_queue} (its worker is unreachable)",
                )
                if workflow.patched(_REAP_PATCH):
                    self.state.abandoned.append(self._box.ref)
                    self._reaps.append(asyncio.create_task(self._reap(self._box.ref)))
        self._box, self.state.sandbox, self.state.sandbox_state = None, None, "none"

    async def _reap(self, ref: t.SandboxRef) -> None:
        """Destroy an abandoned sandbox once its worker picks the call up again (if within
        ``_REAP_WAIT``; the wait is carried over a continue-as-new, not a session's end)."""
        options = replace(self._options(), worker_timeout=_REAP_WAIT)
        try:
            await WorkflowSandbox(ref, options=options).destroy()
            self._event("abandoned_destroyed", f"{ref.sandbox_id} on {ref.task_queue}")
        except (SandbankError, FailureError) as exc:
            self._event("abandoned_kept", f"{ref.sandbox_id}: {type(exc).__name__}: {exc}")
        if ref in self.state.abandoned:
            self.state.abandoned.remove(ref)

    async def _checkpoint(self, force: bool = False) -> str | None:
        s = self.state
        if self._box is None or self._no_store or s.sandbox_state != "running":
            return s.checkpoint
        if not (s.dirty or force or s.checkpoint is None):
            return s.checkpoint
        try:
            out = await self._box.snapshot(parent=s.checkpoint, tags=["checkpoint"])
        except SandbankError as exc:
            if type(exc).__name__ == "NotSupported":
                self._no_store = True
                self._event("checkpoint_unavailable", str(exc))
                return s.checkpoint
            raise
        s.checkpoint, s.dirty = out.snapshot_id, False
        s.checkpoint_bytes = out.logical_bytes
        mark = CheckpointMark(out.snapshot_id, s.turns, conversation=s.conversation)
        s.checkpoints = [*s.checkpoints, mark][-_CHECKPOINT_MARKS:]
        self._event(
            "checkpoint", f"{out.snapshot_id} ({out.files} files, {out.new_bytes} new bytes)"
        )
        return s.checkpoint

    # -- idle tiers -------------------------------------------------------------------------

    def _idle_tiers(self) -> list[tuple[float, str]]:
        """(idle seconds, state) for each tier the sandbox can still go down to: paused and
        stopped where the provider can, released (destroyed)."""
        s, cfg, caps = self.state, self.state.config, self.state.capabilities
        tiers = [(cfg.pause_after, "paused")] if "pause" in caps else []
        if not self._no_store:
            if "stop" in caps:
                tiers += [(cfg.release_after, "stopped"), (cfg.destroy_after, "released")]
            else:
                tiers.append((cfg.release_after, "released"))
        depth = _TIER_DEPTH[s.sandbox_state]
        return [(after, state) for after, state in tiers if _TIER_DEPTH[state] > depth]

    def _idle_timeout(self) -> float | None:
        s = self.state
        if self._migration is not None or s.sandbox_state not in ("running", "paused", "stopped"):
            return None
        tiers = self._idle_tiers()
        if not tiers:
            return None
        return max(min(after for after, _ in tiers) - (workflow.time() - s.last_activity), 0.001)

    async def _idle_step(self) -> None:
        """Go down to the deepest tier whose idle time has come."""
        s = self.state
        idle = workflow.time() - s.last_activity
        due = [state for after, state in self._idle_tiers() if idle >= after]
        try:
            if not due or self._box is None:
                return
            if due[-1] == "released":
                await self._release()
            elif due[-1] == "stopped":
                await self._checkpoint_idle()
                await self._box.stop()
                s.sandbox_state = "stopped"
                self._event("sandbox_stopped", f"after {idle:.0f}s idle, checkpoint {s.checkpoint}")
            else:
                await self._box.pause()
                s.sandbox_state = "paused"
                self._event("paused", f"after {idle:.0f}s idle")
        except (SandboxLost, SandboxNotFound) as exc:
            if not workflow.patched(_IDLE_LOSS_PATCH):
                raise
            await self._lost_while_idle(exc)

    async def _lost_while_idle(self, exc: SandbankError) -> None:
        """The sandbox (or its worker) went away between turns: the next turn rehydrates
        from the last checkpoint."""
        self._event("sandbox_lost", f"while idle: {exc}")
        await self._forget_sandbox(reachable=not isinstance(exc, t.SandboxUnreachable))
        if self.state.checkpoint:
            self.state.sandbox_state = "released"

    async def _checkpoint_idle(self) -> None:
        """Checkpoint an idle sandbox, thawing it first if paused (a stopped one was
        checkpointed when it stopped)."""
        if self._box is not None and self.state.sandbox_state == "paused":
            await self._box.resume()
            self.state.sandbox_state = "running"
        await self._checkpoint()

    async def _release(self) -> None:
        """Checkpoint and destroy the sandbox (nothing live, nothing billed)."""
        s = self.state
        if self._box is None:
            return
        try:
            await self._checkpoint_idle()
            if self._no_store:
                return
            await self._box.destroy()
        except t.SandboxUnreachable as exc:
            if not workflow.patched(_IDLE_LOSS_PATCH):
                raise
            await self._lost_while_idle(exc)  # the last checkpoint is what there is
            return
        self._event("released", f"{s.sandbox.sandbox_id if s.sandbox else ''} -> {s.checkpoint}")
        self._box, s.sandbox, s.sandbox_state = None, None, "released"

    # -- repair -----------------------------------------------------------------------------

    async def _repair(self, request: RepairRequest) -> RepairResult:
        """Roll back to the newest checkpoint that verifies (or ``request.to``) and say what
        that loses; the next turn rehydrates from it."""
        s, session_id = self.state, workflow.info().workflow_id
        if self._migration is not None:
            raise ConfigurationError("a migration is running; repair once it has finished")
        previous = s.checkpoint
        start = request.to or previous
        if start is None:
            return RepairResult(
                session_id, None, None, False, message="the session has no checkpoint yet"
            )
        found = await find_intact(start, follow_parents=not request.to, options=self._options())
        # A chain broken by a lost record: the checkpoints the session remembers are tried.
        for mark in reversed(s.checkpoints if not request.to else []):
            if found.intact is not None:
                break
            if mark.snapshot_id not in {d.snapshot_id for d in found.damaged}:
                more = await find_intact(mark.snapshot_id, options=self._options())
                found = replace(more, damaged=found.damaged + more.damaged)
        problems = "; ".join(f"{d.snapshot_id}: {d.problem}" for d in found.damaged)
        if found.intact is None:
            if request.to:
                raise SnapshotError(
                    f"snapshot {request.to} does not verify ({problems}); pick another "
                    f"(`sandbank snapshot ls --store URL`)"
                )
            raise SnapshotError(
                f"no checkpoint of session {session_id} verifies ({problems}); its workspace "
                f"cannot be rebuilt from the store: repair --to a snapshot you trust, or stop "
                f"it and start a new session"
            )
        marks = [m for m in s.checkpoints if m.snapshot_id == found.intact]
        turn = marks[-1].turn if marks else None
        since = (marks[-1].rolled_back_at or turn) if marks else None
        if found.intact == previous:
            was = s.damaged
            if was:
                self._event("repaired", f"checkpoint {previous} verifies again; nothing lost")
                s.damaged, s.sandbox_state = None, "released"
            return RepairResult(
                session_id, previous, previous, False, turn, [], found.damaged,
                f"checkpoint {previous} verifies; nothing to roll back"
                + ("; the damage is cleared" if was else ""),
            )  # fmt: skip
        if self._box is not None and not request.to:
            # The live sandbox holds the workspace the damaged checkpoints were made from:
            # rolling back would throw it away, so only an explicit target does that.
            message = (
                f"checkpoint {previous} is damaged but the live sandbox still holds the "
                f"workspace; nothing rolled back (`repair --to {found.intact}` drops it)"
            )
            self._event("repair_refused", f"{message}; damaged: {problems}")
            return RepairResult(
                session_id, previous, previous, False, turn, [], found.damaged, message
            )
        lost = list(range(since + 1, s.turns + 1)) if since is not None else None
        if self._box is not None:
            await self._forget_sandbox()
        s.checkpoint, s.checkpoint_bytes = found.intact, found.logical_bytes
        s.dirty, s.damaged, s.sandbox_state = False, None, "released"
        if marks:
            s.conversation = marks[-1].conversation
            kept = s.checkpoints[: s.checkpoints.index(marks[-1]) + 1]
            s.checkpoints = [*kept, replace(marks[-1], rolled_back_at=s.turns)]
        what = (
            f"turns {lost[0]}-{lost[-1]} ({len(lost)})" if lost and len(lost) > 1
            else f"turn {lost[0]}" if lost
            else "no turns" if lost is not None
            else "the turns after it (not remembered)"
        )  # fmt: skip
        message = f"rolled back from {previous} to {found.intact}; lost {what}"
        self._event("repaired", message + (f"; damaged: {problems}" if problems else ""))
        return RepairResult(
            session_id, found.intact, previous, True, turn, lost, found.damaged, message
        )

    # -- fork and migration -----------------------------------------------------------------

    async def _fork(self, new_id: str) -> str:
        if self._box is not None and self.state.sandbox_state == "paused":
            await self._ensure_live()
        await self._checkpoint()
        info = workflow.info()
        seed = SessionState(
            config=replace(self.state.config, name=f"{self.state.config.name} (fork)".strip()),
            checkpoint=self.state.checkpoint,
            sandbox_state="released" if self.state.checkpoint else "none",
            turns=self.state.turns,
            events=list(self.state.events),
            last_activity=workflow.time(),
            forked_from=info.workflow_id,
            conversation=self.state.conversation,
        )
        await workflow.start_child_workflow(
            SessionWorkflow.run,
            seed,
            id=new_id,
            task_queue=info.task_queue,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        self._event("forked", f"{new_id} from {self.state.checkpoint}")
        return new_id

    async def _migrate(self, op: _Op) -> object:
        """Copy the last checkpoint to the target while this sandbox still serves turns."""
        request: MigrateRequest = op.arg
        started = workflow.time()
        if self._migration is not None:
            raise ConfigurationError("a migration is already running")
        source = await self._ensure_live()
        # The last checkpoint is the base (a new one only if a turn left changes); what
        # changes after it moves at the cut, in _migrate_finish.
        base = await self._checkpoint()
        manifest = self.state.config.manifest_json
        if request.manifest_overrides_json:
            manifest = _merge_json(manifest, request.manifest_overrides_json)
        self._event("migrating", f"{source.id} -> {request.provider}")
        prepared: dict[str, Any] = {
            "request": request, "base": base, "manifest": manifest, "started": started,
        }  # fmt: skip

        async def prepare() -> None:
            # Off the op loop: the source keeps serving turns meanwhile.
            try:
                target = await WorkflowSandbox.create(
                    request.provider, manifest, options=self._options()
                )
                prepared["target"] = target
                if base:
                    await target.restore(base)
            except BaseException as exc:
                prepared["error"] = exc
            self._ops.insert(0, _Op(op.id, "migrate_finish", prepared))

        self._migration = asyncio.create_task(prepare())
        return _PENDING

    async def _migrate_finish(self, prepared: dict[str, Any]) -> Any:
        self._migration = None
        target: WorkflowSandbox | None = prepared.get("target")
        if "error" in prepared or target is None:
            if target is not None:
                await target.destroy()
            error = prepared["error"]
            if isinstance(error, SandbankError):
                raise error
            where = target.id if target is not None else prepared["request"].provider
            raise SandboxLost(where, f"preparing the migration target failed: {error}")
        cut = workflow.time()
        self._event("migration_cutover", f"serving stops; {target.id} holds {prepared['base']}")
        source = await self._ensure_live()
        final = await self._checkpoint(force=True)  # changes made outside turns count too
        # Contents for small workspaces, listings for big ones; the source (quiet now) is
        # read while the delta moves to the target.
        contents = self.state.checkpoint_bytes <= FULL_VERIFY_LIMIT
        base = prepared["base"]
        if workflow.patched(_MIGRATE_DELTA_PATCH):
            # The target holds ``base`` (restored in prepare, untouched since): the delta
            # comes from the two snapshots' trees without listing the target. A listing
            # check compares the target with ``final`` as the store has it, without reading
            # the source; contents need the source's bytes (the store keeps other hashes).
            # A wrong assumption about the target shows up as a digest mismatch below.
            delta = (
                target.restore(final, base=base or None) if final and final != base
                else _nothing()
            )  # fmt: skip
            if contents or not final:
                expected = source.digest(contents=contents)
            else:
                expected = target.snapshot_listing_digest(final)
            before, _ = await asyncio.gather(expected, delta)
        else:
            delta = target.restore(final) if final and final != base else _nothing()
            before, _ = await asyncio.gather(source.digest(contents=contents), delta)
        after = await target.digest(contents=contents)
        if before.digest != after.digest:
            await target.destroy()
            self._event("migration_failed", "workspace digests differ; staying on the source")
            raise SandboxLost(target.id, "migrated workspace does not match the source")
        s = self.state
        s.config.provider = prepared["request"].provider
        s.config.manifest_json = prepared["manifest"]
        self._box, s.sandbox, s.capabilities = target, target.ref, target.capabilities
        s.sandbox_state = "running"
        downtime = workflow.time() - cut  # the session serves again from here
        # The source goes away in the background; turns run on the target meanwhile.
        self._cleanup.append(asyncio.create_task(self._destroy_quietly(source)))
        verification = "contents" if contents else "listing"
        self._event(
            "migrated",
            f"to {s.config.provider}:{target.id}, downtime {downtime:.2f}s, "
            f"verified by {verification}",
        )
        result = MigrateResult(
            provider=s.config.provider,
            sandbox_id=target.id,
            checkpoint=s.checkpoint,
            downtime=downtime,
            total=workflow.time() - prepared["started"],
            verified=True,
            verification=verification,
        )
        # The waiting migrate op reads its result under its own id.
        return result

    async def _destroy_quietly(self, box: WorkflowSandbox) -> None:
        try:
            await box.destroy()
        except (SandbankError, FailureError) as exc:
            self._event("destroy_failed", f"{box.id}: {exc}")


async def _nothing() -> None:
    return None


def _merge_json(base: str | None, overrides: str) -> str:
    try:
        extra = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"manifest overrides are not JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise ConfigurationError("manifest overrides must be a JSON object (field: value)")
    return json.dumps({**(json.loads(base) if base else {}), **extra})
