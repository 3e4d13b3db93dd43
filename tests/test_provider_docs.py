"""docs/providers.md stays true: its behaviour table is the suite's, and it names the kit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sandbank.providers
from sandbank.providers.base import Provider, Sandbox

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "providers.md"


def test_behaviour_table_is_current() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "conformance_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_every_behaviour_is_in_the_table() -> None:
    from sandbank.conformance import ProviderConformance

    page = PAGE.read_text()
    tests = [n for n in dir(ProviderConformance) if n.startswith("test_")]
    assert len(tests) > 80
    assert [n for n in tests if f"| `{n}` |" not in page] == []


def test_page_names_every_export_and_primitive() -> None:
    page = PAGE.read_text()
    assert [n for n in sandbank.providers.__all__ if f"`{n}" not in page] == []
    primitives = [
        name
        for cls in (Sandbox, Provider)
        for name, value in vars(cls).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
        and name not in ("_normalize", "_file_path", "_ensure_open")
    ]  # fmt: skip
    assert "_exec" in primitives and "_info" in primitives
    assert [n for n in primitives if f"`{n}" not in page] == []


def test_readme_links_the_page() -> None:
    assert "(docs/providers.md)" in (ROOT / "README.md").read_text()
