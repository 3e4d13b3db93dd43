"""Small workflows that drive the workflow-side sandbox in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sandbank.durable.workflow_sandbox import WorkflowSandbox
    from sandbank.errors import SandbankError


@dataclass
class ScriptInput:
    provider: str
    commands: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    big_file_mb: int = 0
    destroy: bool = True
    exec_id: str | None = None


@dataclass
class ScriptOutput:
    sandbox_id: str
    outputs: list[str]
    exit_codes: list[int]
    files: dict[str, str]
    tree: list[str]
    error_type: str | None = None
    error: str | None = None
    error_path: str | None = None
    big_size: int = 0


@workflow.defn
class ScriptWorkflow:
    """Create a sandbox, write files, run commands, read files back, destroy it."""

    @workflow.run
    async def run(self, inp: ScriptInput) -> ScriptOutput:
        box = await WorkflowSandbox.create(inp.provider)
        out = ScriptOutput(box.id, [], [], {}, [])
        try:
            for path, text in inp.files.items():
                await box.write_file(path, text)
            if inp.big_file_mb:
                data = bytes(range(256)) * (inp.big_file_mb * 4096)
                await box.write_file("big.bin", data)
                out.big_size = len(data)
                ref = await box.stage_file("big.bin")
                await box.write_file("copy/big.bin", ref)
            for cmd in inp.commands:
                res = await box.exec(cmd, exec_id=inp.exec_id)
                out.outputs.append(res.text)
                out.exit_codes.append(res.exit_code)
            for path in inp.files:
                out.files[path] = (await box.read_file(path)).decode()
            out.tree = [e.path for e in await box.list_tree()]
        except SandbankError as exc:
            out.error_type = type(exc).__name__
            out.error = str(exc)
            out.error_path = getattr(exc, "path", None)
        finally:
            if inp.destroy:
                await box.destroy()
        return out


def sample_error(name: str) -> SandbankError:
    """An instance of the SandbankError subclass ``name``, its constructor's parameters filled
    in from their annotations (so a new subclass needs no test code of its own)."""
    import inspect

    from sandbank.durable.failures import error_classes
    from sandbank.providers.base import ExecResult

    cls = error_classes()[name]
    args: dict[str, Any] = {}
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == "retryable":
            continue
        hint = str(param.annotation)
        if "ExecResult" in hint:
            args[param.name] = ExecResult(exit_code=3, stdout=b"partial out", stderr=b"err")
        elif hint == "float":
            args[param.name] = 2.5
        elif hint == "int":
            args[param.name] = 7
        elif hint == "bool":
            args[param.name] = True
        else:
            args[param.name] = f"{param.name} of {name}"
    return cls(**args)


def seen_error(exc: BaseException) -> ErrorSeen:
    from sandbank.durable.failures import error_classes

    fields = {
        k: v
        for k, v in vars(exc).items()
        if isinstance(v, str | int | float | bool) and k != "retryable"
    }
    stdout = getattr(getattr(exc, "result", None), "stdout", b"")
    known = type(exc).__name__ in error_classes()
    return ErrorSeen(
        type(exc).__name__ if known else repr(exc), str(exc),
        bool(getattr(exc, "retryable", None)), fields, stdout.decode(),
    )  # fmt: skip


@dataclass
class ErrorSeen:
    type: str
    message: str
    retryable: bool
    fields: dict[str, Any]
    result_stdout: str = ""


RAISE_ERROR = "test.raise_error"


@workflow.defn
class ErrorWorkflow:
    """Each named error raised by an activity, seen as the workflow gets it back; and raised
    by an update, for the client to see."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, names: list[str]) -> list[ErrorSeen]:
        from datetime import timedelta

        from temporalio.common import RetryPolicy
        from temporalio.exceptions import ActivityError

        from sandbank.durable.failures import from_failure

        seen = []
        for name in names:
            try:
                await workflow.execute_activity(
                    RAISE_ERROR, name, start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )  # fmt: skip
                seen.append(ErrorSeen("nothing raised", "", False, {}))
            except ActivityError as err:
                seen.append(seen_error(from_failure(err)))
        await workflow.wait_condition(lambda: self.done)
        return seen

    @workflow.update
    def raise_error(self, name: str) -> None:
        from sandbank.durable.failures import to_application_error

        raise to_application_error(sample_error(name), non_retryable=True)

    @workflow.signal
    def finish(self) -> None:
        self.done = True
