#!/usr/bin/env bash
# The main job on embedded defaults: set up this machine, then show sandbank end to end: a
# durable session on an embedded Temporal dev server with a local worker and a file:// store
# (turns, a SIGKILLed worker, fork, migration to docker, idle release and wake-up).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
set -x
sandbank providers
sandbank demo
