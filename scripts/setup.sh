#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for sandbank: system packages, the Python package with its
# test extras, a Docker engine with the locally built test image. Idempotent; safe to re-run.
# Afterwards: `. scripts/env.sh` exports DOCKER_HOST for the engine started here.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SOCK=/run/sandbank-docker.sock
IMAGE=${SANDBANK_TEST_IMAGE:-sandbank-test:bookworm}
CACHE=${SANDBANK_CACHE:-/var/cache/sandbank}
mkdir -p "$CACHE"

need_apt=()
for pair in dockerd:docker.io bwrap:bubblewrap debootstrap:debootstrap restic:restic busybox:busybox-static; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

log "pip install -e .[dev]"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

# tests/agents also runs under openai-agents 0.22.3, the version Temporal's plugin pins: a venv
# on top of the system packages (sandbank and its deps) with only the SDK pinned back.
OA22=${SANDBANK_OA22_VENV:-$CACHE/venv-oa22}
if ! "$OA22/bin/python" -c 'import sys, agents, mcp, temporalio.openai_agents; sys.exit(agents.__version__ != "0.22.3")' 2>/dev/null; then
  log "venv $OA22: openai-agents 0.22.3 + temporalio-openai-agents 1.1.0 + mcp"
  python3 -m venv --system-site-packages "$OA22"
  PIP_ROOT_USER_ACTION=ignore "$OA22/bin/python" -m pip install -q --disable-pip-version-check \
    'openai-agents==0.22.3' 'temporalio-openai-agents==1.1.0' 'mcp==2.3.0'
fi

if ! DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
  log "starting dockerd at $SOCK"
  mkdir -p /var/lib/sandbank-docker
  nohup dockerd --host "unix://$SOCK" --data-root /var/lib/sandbank-docker \
    --pidfile /run/sandbank-dockerd.pid >/tmp/sandbank-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 || { tail -20 /tmp/sandbank-dockerd.log; exit 1; }
fi
export DOCKER_HOST=unix://$SOCK

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if [ ! -s "$CACHE/rootfs-bookworm.tar" ]; then
    log "debootstrap bookworm (python3, git) for $IMAGE"
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase --include=python3,git bookworm "$CACHE/rootfs" >/tmp/sandbank-debootstrap.log 2>&1 \
      || { tail -20 /tmp/sandbank-debootstrap.log; exit 1; }
    tar -C "$CACHE/rootfs" -cf "$CACHE/rootfs-bookworm.tar" .
    rm -rf "$CACHE/rootfs"
  fi
  log "docker import $IMAGE"
  docker import "$CACHE/rootfs-bookworm.tar" "$IMAGE" >/dev/null
fi
if ! docker image inspect sandbank-busybox:latest >/dev/null 2>&1; then
  log "docker import sandbank-busybox:latest"
  bb=$(mktemp -d)
  mkdir -p "$bb/bin" "$bb/tmp"
  cp "$(command -v busybox)" "$bb/bin/busybox"
  for c in sh sleep cat echo ls true find rm mkdir kill stat; do ln -sf busybox "$bb/bin/$c"; done
  tar -C "$bb" -c . | docker import - sandbank-busybox:latest >/dev/null
  rm -rf "$bb"
fi
AZURITE_DIR=${SANDBANK_AZURITE_DIR:-$HOME/.cache/sandbank/azurite}
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
  log "npm install azurite (Azure Blob emulator) into $AZURITE_DIR"
  npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --silent azurite@3 >/dev/null
fi
log "ready: DOCKER_HOST=$DOCKER_HOST, image $IMAGE"
