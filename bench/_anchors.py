"""What a benchmark needs, checked before it imports any of it: one line says what to install.

Python packages come with ``pip install -e '.[bench]'``; system tools from apt (Debian names).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
from collections.abc import Mapping

PIP_HINT = "pip install -e '.[bench]'"


def require(
    bench: str,
    packages: Mapping[str, str] = {},
    programs: Mapping[str, str] = {},
) -> None:
    """Exit with one line unless sandbank, every package and every program is there.

    ``packages`` maps a distribution to the exact version the benchmark measures ("" for
    any); ``programs`` maps a program looked up on PATH to the apt package that has it.
    """
    pip: list[str] = []
    if importlib.util.find_spec("sandbank") is None:
        pip.append("sandbank")
    for dist, version in packages.items():
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pip.append(f"{dist}=={version}" if version else dist)
            continue
        if version and found != version:
            pip.append(f"{dist}=={version} (found {found})")
    apt = {package for program, package in programs.items() if shutil.which(program) is None}
    fixes = [PIP_HINT] if pip else []
    if apt:
        fixes.append(f"apt-get install -y {' '.join(sorted(apt))}")
    if fixes:
        wanted = ", ".join([*pip, *sorted(apt)])
        sys.exit(f"{bench} needs {wanted}: {' and '.join(fixes)}")
