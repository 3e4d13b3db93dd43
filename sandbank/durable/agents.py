"""Durable agent turns: an OpenAI Agents SDK agent runs inside the session workflow.

    register_agent("coder", factory)      # worker side: factory(ctx) -> SandboxAgent
    sid = await SessionManager(client).start("local", agent="coder")
    result = await SessionManager(client).prompt(sid, "write a test and make it pass")

The SDK's runner runs in the workflow. Every model call is an activity on the worker
(``sandbank.agent_model``: keys stay there); every tool call goes through the session's
live sandbox as ``WorkflowSandbox`` activities (heartbeats, exec journal, never run twice).
Only data crosses into the workflow: the agent's name and model name. Tool schemas and
instructions travel as one content-addressed blob per run, the earlier conversation as one
blob per turn (``SessionState.conversation``), so history grows with what the model says
and the tools print, not with what is re-sent to the model. Tested with openai-agents
0.22.3 and 0.24.0, with our own model activity (not Temporal's plugin: its model activity
garbles apply_patch outputs).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from agents.models.interface import Model

    from sandbank.durable import types as t
    from sandbank.durable.failures import from_failure
    from sandbank.durable.session import (
        ToolCallRecord,
        Turn,
        TurnOutcome,
        register_turn_handler,
        run_steps,
    )
    from sandbank.durable.workflow_sandbox import WorkflowSandbox
    from sandbank.errors import (
        ConfigurationError,
        PathNotFound,
        SandbankError,
        SandboxLost,
        SandboxNotFound,
    )
    from sandbank.providers.base import ExecResult, SandboxStatus

__all__ = [
    "AGENT_HANDLER",
    "AgentActivities",
    "AgentContext",
    "AgentFactory",
    "AgentSpec",
    "AgentTurnFailed",
    "McpCallFailed",
    "ModelCallFailed",
    "ToolCallRecord",
    "UnknownAgent",
    "agent_names",
    "register_agent",
]

AGENT_HANDLER = "agent"
MODEL_CALL = "sandbank.agent_model"
REMEMBER = "sandbank.agent_remember"
MCP_LIST = "sandbank.agent_mcp_list"
MCP_CALL = "sandbank.agent_mcp_call"
MCP_CALL_TIMEOUT = timedelta(minutes=10)
_MCP_HEARTBEAT = 2.0
_MCP_SETTINGS = (
    "use_structured_content", "_needs_approval_policy", "_failure_error_function",
    "tool_meta_resolver", "custom_data_extractor", "tool_input_guardrails",
    "tool_output_guardrails",
)  # fmt: skip
"""What the workflow's stand-in copies from the agent's MCP server (how its results read)."""
MAX_MODEL_CALLS = 50
"""Model calls one turn may make (the SDK's ``max_turns``)."""
TOOL_OUTPUT_LIMIT = 64 * 1024
"""Bytes of a command's output a tool call hands the model (the rest stays in the sandbox)."""
_INLINE_ITEMS = 8 * 1024
"""A model call's new items above this size travel as a blob, not in the history."""
_SUMMARY = 120
AGENTS_MD = "AGENTS.md"


@dataclass
class AgentContext:
    """What an agent factory is told: the agent's name, the session's model and id."""

    name: str
    model_name: str | None = None
    session_id: str = ""


AgentFactory = Callable[[AgentContext], Any]
_AGENTS: dict[str, AgentFactory] = {}


@dataclass
class AgentSpec:
    """The agent a session runs, as data: a registered name and an optional model name."""

    name: str
    model: str | None = None


class UnknownAgent(ConfigurationError):
    """No agent of that name is registered on the workers."""

    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(_AGENTS)) or "none"
        super().__init__(
            f"no agent {name!r} is registered on the workers (known: {known}); register it "
            f"with register_agent or build_worker(agents=...)"
        )


class AgentTurnFailed(SandbankError):
    """The agent's run failed (say it passed ``MAX_MODEL_CALLS``); the session keeps serving."""


class ModelCallFailed(AgentTurnFailed):
    """The model raised; the turn ends with this error and the session keeps serving."""


class McpCallFailed(SandbankError):
    """An MCP tool call failed on the worker; the model reads this message as its result."""


def register_agent(name: str, factory: AgentFactory) -> None:
    """Make ``factory(ctx) -> Agent`` the agent called ``name`` in this worker process."""
    if not name or not callable(factory):
        raise ConfigurationError("register_agent needs a name and a callable factory")
    _AGENTS[name] = factory


def agent_names() -> list[str]:
    return sorted(_AGENTS)


def coder(ctx: AgentContext) -> Any:
    """The built-in ``coder``: a sandbox agent with the shell and file tools, on
    ``model_for(ctx.model_name)`` (the scripted model without a key)."""
    from agents.sandbox import SandboxAgent
    from agents.sandbox.capabilities import Filesystem, Shell

    from sandbank.agents import model_for

    return SandboxAgent(
        name=ctx.name, instructions="You write code and run its tests in the workspace.",
        capabilities=[Filesystem(), Shell()], model=model_for(ctx.model_name),
    )  # fmt: skip


def check_agent(name: str) -> None:
    if name not in _AGENTS:
        raise UnknownAgent(name)


def build_agent(spec: AgentSpec, session_id: str) -> Any:
    factory = _AGENTS.get(spec.name)
    if factory is None:
        raise UnknownAgent(spec.name)
    return factory(AgentContext(spec.name, spec.model, session_id))


# -- activities (worker side) -----------------------------------------------------------


@dataclass
class ModelCallInput:
    agent: AgentSpec
    session_id: str
    spec: t.BlobRef
    """Instructions, tool schemas and settings, staged once per workflow run."""
    base: t.BlobRef | None
    """The items the model saw before (earlier turns, this turn's earlier calls)."""
    items_json: str | None = None
    items: t.BlobRef | None = None
    """The items since ``base``: inline when small, else staged."""
    agents_md: t.BlobRef | None = None
    """The workspace's ``AGENTS.md`` at the start of the turn, added to the instructions."""


@dataclass
class ModelCallOutput:
    output_json: str
    input: t.BlobRef
    """All the items this call gave the model: the next call's ``base``."""
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class RememberInput:
    base: t.BlobRef | None
    items_json: str


@dataclass
class McpInput:
    """One MCP request: server ``server`` of the agent's ``mcp_servers``, on the worker."""

    agent: AgentSpec
    session_id: str
    server: int
    tool: str = ""
    arguments_json: str = "{}"


class _McpConnection:
    """An agent's MCP server, connected and cleaned up by one task of its own (the SDK's
    stdio client must enter and exit its task group in the same task)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.ready, self.stop = asyncio.Event(), asyncio.Event()
        self.error: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._own())

    async def _own(self) -> None:
        try:
            await self.server.connect()
        except Exception as exc:
            self.error = exc
            return
        finally:
            self.ready.set()
        try:
            await self.stop.wait()
        finally:
            await self.server.cleanup()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(self.task, return_exceptions=True)


class AgentActivities:
    """The model activity and the conversation store, next to ``SandboxActivities``."""

    def __init__(self, sandbox_activities: Any) -> None:
        self.sandbox = sandbox_activities
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._mcp: OrderedDict[tuple[str, str, int], _McpConnection] = OrderedDict()

    def activities(self) -> list[Callable[..., Any]]:
        return [self.model_call, self.remember, self.mcp_list, self.mcp_call]

    async def _load(self, blob: t.BlobRef) -> bytes:
        data = self._cache.get(blob.snapshot_id)
        if data is None:
            data = await self.sandbox._load_blob(blob)
            self._cache[blob.snapshot_id] = data
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return data

    async def _items(self, blob: t.BlobRef | None) -> list[Any]:
        return json.loads(await self._load(blob)) if blob is not None else []

    @activity.defn(name=MODEL_CALL)
    async def model_call(self, inp: ModelCallInput) -> ModelCallOutput:
        """One model call with the worker's model (and its key)."""
        from agents.models.interface import ModelTracing

        spec = json.loads(await self._load(inp.spec))
        items = await self._items(inp.base)
        items += json.loads(inp.items_json) if inp.items_json else await self._items(inp.items)
        given = await self._save(items)
        instructions = spec["instructions"]
        if inp.agents_md is not None:
            notes = (await self._load(inp.agents_md)).decode("utf-8", "replace")
            instructions = f"{instructions or ''}\n\n# AGENTS.md of the workspace\n\n{notes}"
        agent = build_agent(inp.agent, inp.session_id)
        model = _worker_model(agent, inp.agent.model)
        try:
            response = await model.get_response(
                instructions, items, _settings(spec["settings"]), _tools(spec["tools"]),
                None, [], tracing=ModelTracing.DISABLED, previous_response_id=None,
            )  # fmt: skip
        except Exception as exc:
            raise ModelCallFailed(
                f"the model of agent {inp.agent.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        usage = response.usage
        return ModelCallOutput(
            json.dumps([_dump(item) for item in response.output]),
            given,
            int(getattr(usage, "input_tokens", 0) or 0),
            int(getattr(usage, "output_tokens", 0) or 0),
        )

    @activity.defn(name=REMEMBER)
    async def remember(self, inp: RememberInput) -> t.BlobRef:
        """The conversation with this turn's last items appended, as a new blob."""
        return await self._save(await self._items(inp.base) + json.loads(inp.items_json))

    @activity.defn(name=MCP_LIST)
    async def mcp_list(self, inp: McpInput) -> str:
        """The tools of the agent's MCP server (its own tool filter applied), as JSON."""
        from agents import RunContextWrapper

        agent, server = await self._mcp_server(inp)
        tools = await server.list_tools(RunContextWrapper(context=None), agent)
        return json.dumps([tool.model_dump(mode="json", by_alias=True) for tool in tools])

    @activity.defn(name=MCP_CALL)
    async def mcp_call(self, inp: McpInput) -> str:
        """One MCP tool call, heartbeating while it runs; its result as JSON."""
        _, server = await self._mcp_server(inp)
        call = asyncio.ensure_future(server.call_tool(inp.tool, json.loads(inp.arguments_json)))
        while not call.done():
            activity.heartbeat()
            await asyncio.wait({call}, timeout=_MCP_HEARTBEAT)
        try:
            result = call.result()
        except Exception as exc:
            raise McpCallFailed(
                f"MCP tool {inp.tool!r} of server {server.name!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def _mcp_server(self, inp: McpInput) -> tuple[Any, Any]:
        """The agent and its MCP server ``inp.server``, connected once per session and worker
        (the 16 most recently used stay connected)."""
        key = (inp.agent.name, inp.session_id, inp.server)
        conn = self._mcp.get(key)
        agent = build_agent(inp.agent, inp.session_id)
        if conn is None or conn.error is not None:
            servers = list(getattr(agent, "mcp_servers", []) or [])
            if inp.server >= len(servers):
                raise ConfigurationError(
                    f"agent {inp.agent.name!r} has {len(servers)} MCP servers on this worker, "
                    f"not {inp.server + 1}: register the same agent on every worker"
                )
            conn = self._mcp[key] = _McpConnection(servers[inp.server])
            while len(self._mcp) > 16:
                await self._mcp.popitem(last=False)[1].close()
        self._mcp.move_to_end(key)
        await conn.ready.wait()
        if conn.error is not None:
            raise ConfigurationError(
                f"MCP server {conn.server.name!r} of agent {inp.agent.name!r} did not start: "
                f"{type(conn.error).__name__}: {conn.error}"
            )
        return agent, conn.server

    async def _save(self, items: list[Any]) -> t.BlobRef:
        data = json.dumps(items).encode()
        blob: t.BlobRef = await self.sandbox._save_blob(data, "conversation.json")
        self._cache[blob.snapshot_id] = data
        return blob


def _worker_model(agent: Any, model_name: str | None) -> Any:
    from agents.models.interface import Model

    from sandbank.agents import model_for

    model = getattr(agent, "model", None)
    if isinstance(model, Model):
        return model
    return model_for(model if isinstance(model, str) else model_name)


def _settings(data: dict[str, Any]) -> Any:
    from agents import ModelSettings

    return ModelSettings(**{k: v for k, v in data.items() if v is not None})


async def _never(*_: Any) -> str:
    raise RuntimeError("tools run in the workflow, not in the model activity")


def _tools(specs: list[dict[str, Any]]) -> list[Any]:
    from agents.tool import CustomTool, FunctionTool

    tools: list[Any] = []
    for spec in specs:
        name, description = spec["name"], spec["description"]
        if spec["kind"] == "function":
            schema, strict = spec["schema"], spec["strict"]
            tools.append(FunctionTool(name, description, schema, _never, strict))
        else:
            tools.append(CustomTool(name, description, _never, spec["format"]))
    return tools


def _tool_spec(tool: Any) -> dict[str, Any]:
    from agents.tool import CustomTool, FunctionTool

    if isinstance(tool, FunctionTool):
        return {
            "kind": "function", "name": tool.name, "description": tool.description,
            "schema": tool.params_json_schema, "strict": tool.strict_json_schema,
        }  # fmt: skip
    if isinstance(tool, CustomTool):  # apply_patch of the sandbox capabilities
        return {
            "kind": "custom", "name": tool.name, "description": tool.description,
            "format": tool.format,
        }  # fmt: skip
    raise ConfigurationError(
        f"tool {getattr(tool, 'name', tool)!r} ({type(tool).__name__}) cannot run in a durable "
        f"session yet; use function tools, the sandbox capabilities (Shell, Filesystem)"
    )


def _dump(item: Any) -> Any:
    """A model item as JSON data (pydantic models, dicts of them, lists)."""
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json", exclude_unset=True)
    if isinstance(item, dict):
        return {k: _dump(v) for k, v in item.items()}
    if isinstance(item, (list, tuple)):
        return [_dump(v) for v in item]
    if isinstance(item, (str, int, float, bool)) or item is None:
        return item
    if isinstance(item, Iterable):  # an iterator some SDK releases leave in tool outputs
        return [_dump(v) for v in item]
    return str(item)


# -- the workflow side ------------------------------------------------------------------


class _ActivityModel(Model):
    """The SDK's ``Model`` as the workflow sees it: each call is a ``MODEL_CALL`` activity."""

    def __init__(
        self, spec: AgentSpec, session_id: str, conversation: t.BlobRef | None,
        agents_md: t.BlobRef | None = None,
    ) -> None:  # fmt: skip
        self.spec, self.session_id, self.conversation = spec, session_id, conversation
        self.agents_md = agents_md
        self.base, self.covered = conversation, 0
        """What the model has seen: ``base`` holds the earlier turns and the first
        ``covered`` items of this turn (each call sends only the items after them)."""

    async def get_response(
        self, system_instructions: str | None, input: str | list[Any], model_settings: Any,
        tools: list[Any], output_schema: Any, handoffs: list[Any], tracing: Any, **_: Any,
    ) -> Any:  # fmt: skip
        from agents.items import ModelResponse
        from agents.usage import Usage
        from openai.types.responses import ResponseOutputItem
        from pydantic import TypeAdapter

        if output_schema is not None or handoffs:
            raise ConfigurationError(
                "durable agent sessions do not support output types or handoffs yet; "
                "give the agent plain text output and no handoffs"
            )
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        spec = json.dumps(
            {
                "instructions": system_instructions,
                "tools": [_tool_spec(tool) for tool in tools],
                "settings": model_settings.to_json_dict(),
            },
            sort_keys=True,
        ).encode()
        if len(items) < self.covered:  # the runner changed earlier items: send them all
            self.base, self.covered = self.conversation, 0
        items_json = json.dumps([_dump(i) for i in items[self.covered :]])
        inp = ModelCallInput(self.spec, self.session_id, await _staged(spec), self.base)
        inp.agents_md = self.agents_md
        if len(items_json) > _INLINE_ITEMS:
            inp.items = await _staged(items_json.encode())
        else:
            inp.items_json = items_json
        out: ModelCallOutput = await workflow.execute_activity(
            MODEL_CALL, inp, result_type=ModelCallOutput,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=_model_retry(),
        )  # fmt: skip
        self.base, self.covered = out.input, len(items)
        adapter: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)
        output = [adapter.validate_python(i) for i in json.loads(out.output_json)]
        usage = Usage(
            requests=1, input_tokens=out.input_tokens, output_tokens=out.output_tokens,
            total_tokens=out.input_tokens + out.output_tokens,
        )  # fmt: skip
        return ModelResponse(output=output, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigurationError("durable agent turns do not stream")


def _model_retry() -> Any:
    from temporalio.common import RetryPolicy

    return RetryPolicy(
        maximum_attempts=3, non_retryable_error_types=["ModelCallFailed", "ConfigurationError"]
    )


async def _staged(data: bytes) -> t.BlobRef:
    """``data`` in the store through a local activity (its input stays out of history),
    once per workflow run (the cache lives on the workflow, so a replay stages it again)."""
    staged: dict[str, t.BlobRef] = workflow.instance().__dict__.setdefault("_agent_staged", {})
    key = hashlib.sha256(data).hexdigest()
    ref = staged.get(key)
    if ref is None:
        ref = await workflow.execute_local_activity(
            t.STAGE_BYTES, t.StageBytesInput(t.b64encode(data), "agent.json"),
            result_type=t.BlobRef, start_to_close_timeout=timedelta(minutes=2),
        )  # fmt: skip
        staged[key] = ref
    return ref


def _mcp_stand_ins(agent: Any, spec: AgentSpec, session_id: str) -> list[Any]:
    """The agent's MCP servers as the workflow sees them: each request is an activity on a
    worker, where the real server runs (nothing of it enters the workflow but data)."""
    from agents.mcp import MCPServer
    from mcp.types import CallToolResult, Tool

    class ActivityMCPServer(MCPServer):
        def __init__(self, index: int, real: Any) -> None:
            super().__init__()
            self.__dict__.update({k: v for k, v in vars(real).items() if k in _MCP_SETTINGS})
            self.index, self._name = index, str(real.name)
            self._tools: list[Any] | None = None

        @property
        def name(self) -> str:
            return self._name

        async def connect(self) -> None:
            """The worker connects the real server at its first request."""

        async def cleanup(self) -> None:
            """The worker keeps the real server connected for the session's next turns."""

        async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[Any]:
            if self._tools is None:  # once a turn (the runner asks before each model call)
                listed = await workflow.execute_activity(
                    MCP_LIST, McpInput(spec, session_id, self.index), result_type=str,
                    start_to_close_timeout=timedelta(minutes=2), retry_policy=_model_retry(),
                )  # fmt: skip
                self._tools = [Tool.model_validate(tool) for tool in json.loads(listed)]
            return list(self._tools)

        async def call_tool(
            self, tool_name: str, arguments: dict[str, Any] | None, meta: Any = None
        ) -> Any:
            from temporalio.common import RetryPolicy
            from temporalio.exceptions import TimeoutError as ActivityTimeout

            inp = McpInput(spec, session_id, self.index, tool_name, json.dumps(arguments or {}))
            try:
                result = await workflow.execute_activity(
                    MCP_CALL, inp, result_type=str, start_to_close_timeout=MCP_CALL_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=5 * _MCP_HEARTBEAT),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )  # fmt: skip
            except ActivityError as exc:  # an error result: the model reads why
                reason = str(exc.cause or exc)
                if isinstance(exc.cause, ActivityTimeout):
                    reason = (
                        f"MCP tool {tool_name!r} of server {self.name!r} was cut off (its "
                        f"worker stopped or it ran past {MCP_CALL_TIMEOUT}); it is not retried, "
                        f"so it ran at most once and may or may not have taken effect"
                    )
                error = {"content": [{"type": "text", "text": reason}], "isError": True}
                return CallToolResult.model_validate(error)
            return CallToolResult.model_validate(json.loads(result))

        async def list_prompts(self) -> Any:
            raise ConfigurationError("durable agent sessions do not serve MCP prompts yet")

        async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
            raise ConfigurationError("durable agent sessions do not serve MCP prompts yet")

    return [ActivityMCPServer(i, real) for i, real in enumerate(agent.mcp_servers or [])]


class _Provider:
    def __init__(self, name: str) -> None:
        self.name = name


class _Watched(WorkflowSandbox):
    """The session's sandbox, remembering the first call that found it lost: the SDK turns
    a tool's error into text for the model, and the turn must end on it instead."""

    lost: SandbankError | None = None

    async def _call(self, name: str, arg: Any, result_type: Any, **kw: Any) -> Any:
        try:
            return await super()._call(name, arg, result_type, **kw)
        except (SandboxLost, SandboxNotFound, t.ExecInterrupted) as exc:
            self.lost = self.lost or exc
            raise


class _Box:
    """``WorkflowSandbox`` with the few ``Sandbox`` calls the SDK session makes beyond it
    (tars of single entries, built from listings and reads). Records each exec."""

    def __init__(self, box: WorkflowSandbox, provider: str) -> None:
        self.inner = _Watched(box.ref, capabilities=box.capabilities, options=box.options)
        self.provider = _Provider(provider)
        self.execs: list[tuple[float, int | None]] = []

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def closed(self) -> bool:
        return self.inner.closed

    async def exec(self, cmd: str | Sequence[str], **kw: Any) -> ExecResult:
        kw.setdefault("output_limit", TOOL_OUTPUT_LIMIT)
        result = await self.inner.exec(cmd, **kw)
        self.execs.append((workflow.time(), result.exit_code))
        return result

    async def status(self) -> SandboxStatus:
        """Running: the session made the sandbox live for this turn (no activity per tool
        call); a sandbox lost since fails the next call, and the session recovers it."""
        return SandboxStatus.RUNNING

    async def aclose(self) -> None:
        """The session keeps its sandbox between turns."""

    async def write_file(self, path: str, data: bytes | str, mode: int | None = None) -> None:
        await self.inner.write_file(path, data, mode)

    async def list_tree(self, path: str = ".") -> list[Any]:
        return await self.inner.list_tree(path)

    async def remove(self, path: str) -> None:
        await self.inner.remove(path)

    async def mkdir(self, path: str) -> None:
        await self.inner.mkdir(path)

    async def export_tar(self, paths: Sequence[str] | None = None) -> AsyncIterator[bytes]:
        if not paths:
            raise ConfigurationError(
                "an agent turn does not export the whole workspace: the session checkpoints it"
            )
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                parent = path.rsplit("/", 1)[0] if "/" in path else "."
                entry = next(
                    (e for e in await self.inner.list_tree(parent) if e.path == path), None
                )
                if entry is None:
                    raise PathNotFound(path, self.id)
                info = tarfile.TarInfo(path)
                info.mode = entry.mode & 0o7777
                data = b""
                if entry.type == "dir":
                    info.type = tarfile.DIRTYPE
                elif entry.type == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, entry.link_target or ""
                else:
                    data = await self.inner.read_file(path)
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        yield buf.getvalue()

    async def import_tar(self, stream: Any) -> None:
        data = stream if isinstance(stream, bytes) else b"".join([c async for c in stream])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    await self.inner.mkdir(member.name)
                elif member.issym():
                    await self.inner.exec(["ln", "-sfn", member.linkname, member.name])
                elif member.isreg():
                    body = tar.extractfile(member)
                    content = body.read() if body is not None else b""
                    await self.inner.write_file(member.name, content, member.mode & 0o7777)


@dataclass
class _Timing:
    started: dict[str, tuple[float, int]] = field(default_factory=dict)
    done: dict[str, tuple[float, int | None]] = field(default_factory=dict)


def _hooks(box: _Box, timing: _Timing) -> Any:
    from agents import RunHooks

    def key(context: Any, tool: Any) -> str:
        return str(getattr(context, "tool_call_id", "") or getattr(tool, "name", ""))

    class Hooks(RunHooks[Any]):
        async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
            timing.started[key(context, tool)] = (workflow.time(), len(box.execs))

        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
            started, first = timing.started.get(key(context, tool), (workflow.time(), 0))
            codes = [code for _, code in box.execs[first:]]
            timing.done[key(context, tool)] = (
                workflow.time() - started,
                codes[-1] if codes else None,
            )

    return Hooks()


def _summary(raw: Any) -> str:
    text = getattr(raw, "arguments", None) or getattr(raw, "input", None) or ""
    try:
        args = json.loads(text)
        if isinstance(args, dict):
            text = " ".join(f"{k}={v}" for k, v in args.items())
    except (TypeError, ValueError):
        pass
    text = " ".join(str(text).split())
    return text if len(text) <= _SUMMARY else text[: _SUMMARY - 1] + "…"


def _records(new_items: list[Any], timing: _Timing) -> list[ToolCallRecord]:
    from agents.items import ToolCallItem

    records = []
    for item in new_items:
        if isinstance(item, ToolCallItem):
            raw = item.raw_item
            call_id = str(_get(raw, "call_id") or "")
            name = str(_get(raw, "name") or _get(raw, "type") or "tool")
            seconds, code = timing.done.get(call_id, timing.done.get(name, (0.0, None)))
            records.append(ToolCallRecord(name, _summary(raw), code, round(seconds, 3)))
    return records


def _get(raw: Any, key: str) -> Any:
    return raw.get(key) if isinstance(raw, dict) else getattr(raw, key, None)


async def run_agent_turn(box: WorkflowSandbox, turn: Turn) -> TurnOutcome:
    """The ``agent`` turn handler: ``turn.message`` is the prompt."""
    from agents import RunConfig, Runner
    from agents.sandbox import SandboxRunConfig

    session = workflow.instance()
    state = session.state
    config = state.config
    if not config.agent:
        raise ConfigurationError(
            "this session has no agent; start it with agent=NAME to send it prompts"
        )
    if turn.steps:  # attachments
        await run_steps(box, Turn(steps=turn.steps))
    spec = AgentSpec(config.agent, config.model)
    session_id = workflow.info().workflow_id
    with workflow.unsafe.sandbox_unrestricted():  # the factory may build a model client
        agent = build_agent(spec, session_id)
    # A turn run again (its sandbox was lost) starts from the conversation it started from.
    starts: dict[int, Any] = session.__dict__.setdefault("_agent_turn_start", {})
    conversation = starts.setdefault(state.turns, state.conversation)
    model = _ActivityModel(spec, session_id, conversation, await _agents_md(box))
    # The agent's own model and MCP servers run in activities only.
    agent = agent.clone(model=model, mcp_servers=_mcp_stand_ins(agent, spec, session_id))
    adapter = _Box(box, config.provider)
    timing = _Timing()
    run_config = RunConfig(
        model=model,
        tracing_disabled=True,
        sandbox=SandboxRunConfig(session=_sdk_session(adapter)),
    )
    try:
        result = await Runner.run(
            agent, turn.message, run_config=run_config, max_turns=MAX_MODEL_CALLS,
            hooks=_hooks(adapter, timing),
        )  # fmt: skip
    except Exception as exc:  # the SDK wraps what a model or tool raised
        error = adapter.inner.lost or _turn_error(exc)
        if error is exc:
            raise
        raise error from exc
    if adapter.inner.lost is not None:  # the session rebuilds the sandbox, runs the turn again
        raise adapter.inner.lost
    items = json.dumps([_dump(i) for i in result.to_input_list()[model.covered :]])
    state.conversation = await workflow.execute_activity(
        REMEMBER, RememberInput(model.base, items), result_type=t.BlobRef,
        start_to_close_timeout=timedelta(minutes=2), retry_policy=_model_retry(),
    )  # fmt: skip
    output = result.final_output
    reply = output if isinstance(output, str) else json.dumps(_dump(output))
    return TurnOutcome(reply=reply, tool_calls=_records(result.new_items, timing))


async def _agents_md(box: WorkflowSandbox) -> t.BlobRef | None:
    """The workspace's ``AGENTS.md`` staged in the store (its text stays out of history)."""
    if (await box.exec(["test", "-f", AGENTS_MD], output_limit=0)).exit_code != 0:
        return None  # (a failed stage_file would put its stack trace in the history)
    return await box.stage_file(AGENTS_MD)


def _turn_error(exc: BaseException) -> SandbankError:
    """The sandbank error behind what the SDK raised (an activity's failure mapped back)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SandbankError):
            return seen
        if isinstance(seen, ActivityError) and seen.cause is not None:
            mapped = from_failure(seen)
            if isinstance(mapped, SandbankError):
                return mapped
            return ModelCallFailed(str(seen.cause))
        seen = seen.__cause__ or seen.__context__
    return AgentTurnFailed(f"the agent turn failed: {type(exc).__name__}: {exc}")


def _sdk_session(box: _Box) -> Any:
    from agents.sandbox import Manifest as SdkManifest
    from agents.sandbox import resolve_snapshot
    from agents.sandbox.session import SandboxSession
    from agents.sandbox.snapshot import NoopSnapshotSpec

    from sandbank.agents.session import SandbankSandboxSession
    from sandbank.agents.state import SandbankSessionState

    session_id = workflow.uuid4()
    state = SandbankSessionState(
        session_id=session_id,
        snapshot=resolve_snapshot(NoopSnapshotSpec(), str(session_id)),
        manifest=SdkManifest(),
        provider=box.provider.name,
        sandbox_id=box.id,
        owns_sandbox=False,
        workspace_root_ready=True,
    )
    inner = SandbankSandboxSession(state, provider=None, box=box)  # type: ignore[arg-type]
    inner._set_start_state_preserved(True, system=True)
    return SandboxSession(inner)


register_turn_handler(AGENT_HANDLER, run_agent_turn)
