"""Small workflows that drive the workflow-side sandbox in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

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
