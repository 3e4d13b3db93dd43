"""Sandbank errors across Temporal's boundary: one way out (``to_application_error``) and
one way back (``from_failure``), for every ``SandbankError`` subclass with its fields.

Pure code, imported by workflows (passed through), activities and the session client.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ActivityError, ApplicationError

import sandbank.snapshots.errors  # noqa: F401  (its subclasses, imported outside workflows)
from sandbank import errors as _errors
from sandbank.durable import types as t
from sandbank.providers.base import ExecResult

__all__ = ["error_classes", "exec_result", "from_failure", "to_application_error"]

_SIMPLE = (str, int, float, bool, type(None))


def _carried(name: str, value: Any) -> bool:
    """Whether an error's attribute travels as a field: public, plain data (an
    ``ExecTimeout``'s ``result`` travels on its own)."""
    if name.startswith("_") or name == "result":
        return False
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, list | tuple):
        return all(isinstance(v, _SIMPLE) for v in value)
    return False


def error_classes() -> dict[str, type[_errors.SandbankError]]:
    """Every ``SandbankError`` subclass defined so far, by class name (the snapshot store's
    and the durable layer's included), found by walking the class tree."""
    found: dict[str, type[_errors.SandbankError]] = {}
    todo: list[type[_errors.SandbankError]] = [_errors.SandbankError]
    while todo:
        cls = todo.pop(0)
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


def to_application_error(exc: BaseException, *, non_retryable: bool | None = None) -> BaseException:
    """The one mapping from sandbank errors to Temporal failures; other errors pass through.

    The failure type is the error's class name and ``non_retryable`` is ``not retryable``
    (unless given); the details carry the error's fields (``path``, ``provider``, ``object``,
    ..., and ``retryable``), and an error with a ``result`` (``ExecTimeout``'s partial output,
    ``SetupFailed``'s command) that result's output.
    """
    if isinstance(exc, ApplicationError) or not isinstance(exc, _errors.SandbankError):
        return exc
    fields = {k: v for k, v in vars(exc).items() if _carried(k, v)}
    fields["retryable"] = exc.retryable
    details: list[Any] = [fields]
    result = getattr(exc, "result", None)
    if isinstance(result, ExecResult):
        details.append(_exec_output(result, timed_out=isinstance(exc, _errors.ExecTimeout)))
    return ApplicationError(
        str(exc),
        *details,
        type=type(exc).__name__,
        non_retryable=not exc.retryable if non_retryable is None else non_retryable,
    )


def from_failure(err: BaseException) -> BaseException:
    """The sandbank error a failure started as, with its fields (or ``err`` itself)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if not isinstance(cause, ApplicationError) or not cause.type:
        return err
    cls = error_classes().get(cause.type)
    if cls is None:
        return err
    exc = cls.__new__(cls)
    Exception.__init__(exc, cause.message)
    exc.retryable = not cause.non_retryable
    # Histories from before fields were carried hold an ExecTimeout's output alone.
    details = [d for d in cause.details if isinstance(d, dict | t.ExecOutput)]
    outputs = [d for d in details if isinstance(d, t.ExecOutput) or "stdout_b64" in d]
    for fields in details:
        if isinstance(fields, dict) and fields not in outputs:
            for name, value in fields.items():
                if not name.startswith("_") and name != "args":
                    setattr(exc, name, value)
    if outputs:
        exc.__dict__["result"] = exec_result(outputs[0])
    if isinstance(exc, _errors.ExecTimeout):
        exc.__dict__.setdefault("timeout", 0.0)
        exc.__dict__.setdefault("result", ExecResult(exit_code=-1))
    return exc


def _exec_output(result: ExecResult, **extra: Any) -> t.ExecOutput:
    return t.ExecOutput(
        exit_code=result.exit_code,
        stdout_b64=t.b64encode(result.stdout[: t.INLINE_LIMIT]),
        stderr_b64=t.b64encode(result.stderr[: t.STDERR_LIMIT]),
        duration=result.duration,
        truncated=result.truncated
        or len(result.stdout) > t.INLINE_LIMIT
        or len(result.stderr) > t.STDERR_LIMIT,
        stdout_size=len(result.stdout),
        stderr_size=len(result.stderr),
        **extra,
    )


def exec_result(out: Any) -> ExecResult:
    if isinstance(out, dict):
        out = t.ExecOutput(**out)
    return ExecResult(
        exit_code=out.exit_code,
        stdout=t.b64decode(out.stdout_b64),
        stderr=t.b64decode(out.stderr_b64),
        duration=out.duration,
        truncated=out.truncated,
    )
