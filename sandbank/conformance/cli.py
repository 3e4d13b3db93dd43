"""`sandbank conformance NAME`: run the conformance suite against an installed provider.

Prints a matrix of behaviour x pass/fail/skip with the provider's declared capabilities,
or one JSON object with ``--json``. Exits 1 if any behaviour failed.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbank.cli import json_flag, option_flag, parse_options, print_table
from sandbank.errors import SandbankError

from .runner import ConformanceReport, run_conformance

__all__ = ["conformance_command", "render_report"]

_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "skipped": "yellow",
    "xfailed": "yellow",
}
_LABEL = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "xfailed": "xfail",
}


def render_report(report: ConformanceReport, console: Console) -> None:
    """The matrix: declared capabilities, then one row per behaviour, then the totals."""
    caps = Text("capabilities: ")
    for index, (name, declared) in enumerate(report.capabilities.items()):
        if index:
            caps.append("  ")
        caps.append(f"{name} {'yes' if declared else 'no'}", style="green" if declared else "dim")
    console.print(f"[bold]sandbank conformance:[/bold] {report.provider} ({report.isolation})")
    console.print(caps)
    table = Table("result", "test", "behaviour", show_lines=False)
    group = None
    for outcome in report.outcomes:
        if outcome.group != group:
            if group is not None:
                table.add_section()
            group = outcome.group
            table.add_row("", Text(group.removesuffix("Tests"), style="bold"), "")
        behaviour = Text(outcome.behaviour)
        if outcome.reason:
            style = "dim" if outcome.outcome in ("skipped", "xfailed") else "red"
            behaviour.append(f"\n{outcome.reason}", style=style)
        table.add_row(
            Text(_LABEL[outcome.outcome], style=_STYLE[outcome.outcome]),
            Text(outcome.test),
            behaviour,
        )
    print_table(table, console, whole=("test",))
    summary = report.summary
    style = "green" if report.ok else "bold red"
    console.print(
        f"[{style}]{summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['error']} errors, {summary['skipped']} skipped, "
        f"{summary['xfailed']} expected failures[/{style}] "
        f"in {report.duration:.1f}s"
    )
    if report.pytest_exit_code not in (0, 1):
        console.print(f"[bold red]pytest exited with code {report.pytest_exit_code}[/bold red]")


@click.command("conformance")
@click.argument("name")
@option_flag
@json_flag
@click.option(
    "-k", "keyword", metavar="EXPR", help="Only behaviours matching a pytest -k expression."
)
@click.option(
    "--expect-fail",
    "expect_fail",
    metavar="ID,...",
    multiple=True,
    help="Behaviours this provider is known to miss (test names, comma-separated): reported "
    "as expected failures, and as failures if they pass.",
)
@click.option("--pytest-output", is_flag=True, help="Show pytest's own output (on stderr).")
def conformance_command(
    name: str,
    options: tuple[str, ...],
    as_json: bool,
    keyword: str | None,
    expect_fail: tuple[str, ...],
    pytest_output: bool,
) -> None:
    """Run the provider conformance suite against provider NAME and print the matrix."""
    try:
        import pytest_asyncio  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "the conformance suite needs pytest and pytest-asyncio: "
            "pip install pytest pytest-asyncio"
        ) from None
    try:
        expected = {
            test.strip(): "declared with --expect-fail"
            for value in expect_fail
            for test in value.split(",")
            if test.strip()
        }
        report = run_conformance(
            name,
            parse_options(options),
            keyword=keyword,
            expected_failures=expected,
            show_pytest_output=pytest_output,
        )
    except SandbankError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        render_report(report, Console())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    conformance_command()
