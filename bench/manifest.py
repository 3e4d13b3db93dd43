"""The setup cache: a manifest whose setup compiles C for about 20 s, created twice in one run.

    python bench/manifest.py [--provider local|docker] [--files N] [--json]

The manifest brings generated C sources from a host directory and a setup that compiles
them with gcc inside the sandbox (no network). The first ``create_sandbox`` runs the setup
and caches its result in a fresh file store; the second, from an equal manifest, restores
it. Both are timed end to end (sources fingerprinted, sandbox created, setup or restore),
and the second sandbox runs the built program to show the restore is complete. With
``--json`` the last line is one JSON object with every figure and a ``targets`` map.

Target: cached create <= 0.2x the uncached one (``setup_cached_vs_uncached``).
This is a benchmark, not a test: the machine is shared, so read the ratio, not the seconds.
Needs gcc in the sandbox (the host's /usr for ``local``; the image for ``docker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _anchors import require

require("bench/manifest.py", programs={"gcc": "gcc", "bwrap": "bubblewrap"})

from sandbank import create_sandbox, get_provider  # noqa: E402
from sandbank.snapshots import SnapshotStore  # noqa: E402

TARGET = 0.2
FUNCTIONS = 300

SETUP = [
    "mkdir -p build",
    'for f in src/*.c; do gcc -O2 -c "$f" -o build/$(basename "$f" .c).o || exit 1; done',
    "gcc -O2 -o build/app build/*.o src/main/main.c",
]


def generate(root: Path, files: int) -> None:
    """``files`` C files of FUNCTIONS small loop functions each, and a main calling them."""
    (root / "main").mkdir(parents=True)
    calls = []
    for i in range(files):
        lines = []
        for j in range(FUNCTIONS):
            lines.append(
                f"int f{i}_{j}(int *a, int n) {{\n  int s = 0;\n"
                f"  for (int k = 0; k < n; k++) {{\n"
                f"    s += a[k] * {j + 3} ^ (a[(k + {j}) % n] >> {j % 7});\n"
                f"    if (s > {j * 1000}) s -= a[k] / (k + 1);\n  }}\n  return s + {j};\n}}\n"
            )
        (root / f"m{i}.c").write_text("".join(lines))
        calls.append(f"int f{i}_0(int *a, int n);")
    body = " + ".join(f"f{i}_0(a, 4)" for i in range(files))
    main = f'int main(void) {{ int a[4] = {{1, 2, 3, 4}}; printf("%d\\n", {body}); }}\n'
    (root / "main" / "main.c").write_text("#include <stdio.h>\n" + "\n".join(calls) + "\n" + main)


async def timed_create(
    provider: Any, manifest: dict[str, Any], store: SnapshotStore
) -> tuple[Any, float]:
    started = time.perf_counter()
    box = await create_sandbox(provider, manifest, store=store)
    return box, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=["local", "docker"], default="local")
    parser.add_argument("--image", default="sandbank-test:bookworm", help="for docker")
    parser.add_argument("--files", type=int, default=16, help="C files to compile")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    options = {"image": args.image} if args.provider == "docker" else {}
    provider = get_provider(args.provider, **options)
    with tempfile.TemporaryDirectory(prefix="sandbank-bench-manifest-") as tmp:
        generate(Path(tmp, "src"), args.files)
        manifest = {  # network=False, the default: the setup needs none
            "dirs": [{"path": "src", "host": os.path.join(tmp, "src")}],
            "setup": SETUP,
        }
        store = await SnapshotStore.open(Path(tmp, "store"), cache_dir=Path(tmp, "cache"))
        try:
            first, uncached = await timed_create(provider, manifest, store)
            expected = (await first.exec(["build/app"])).stdout
            await first.destroy()
            second, cached = await timed_create(provider, manifest, store)
            try:
                result = await second.exec(["build/app"])
                assert result.exit_code == 0 and result.stdout == expected, result
            finally:
                await second.destroy()
            records = await store.list()
        finally:
            await store.aclose()
    ratio = cached / uncached
    report: dict[str, Any] = {
        "provider": args.provider,
        "c_files": args.files,
        "functions_per_file": FUNCTIONS,
        "uncached_seconds": round(uncached, 3),
        "cached_seconds": round(cached, 3),
        "setup_snapshot_bytes": records[0].stats.new_bytes if records else 0,
        "targets": {
            "setup_cached_vs_uncached": {
                "value": round(ratio, 4),
                "limit": TARGET,
                "met": ratio <= TARGET,
            }
        },
    }
    print(f"uncached create (setup ran):      {uncached:8.2f} s")
    print(f"cached create (setup restored):   {cached:8.2f} s")
    print(f"cached / uncached:                {ratio:8.3f}  (target <= {TARGET})")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
