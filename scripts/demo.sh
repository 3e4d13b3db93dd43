#!/usr/bin/env bash
# The main job on embedded defaults: set up this machine, then show sandbank end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
set -x
sandbank providers
sandbank run --provider local -- sh -c 'echo "hello from $(hostname), isolated as uid $(id -u)"; ls /'
sandbank run --provider docker --image sandbank-test:bookworm -- python3 -c 'import platform; print("hello from", platform.platform())'
