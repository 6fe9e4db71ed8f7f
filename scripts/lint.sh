#!/usr/bin/env bash
# What CI checks besides the tests (`make lint`): uv.lock matches pyproject.toml, ruff's lint and format and pyright
# (standard mode, the whole tree) are clean.
set -euo pipefail
cd "$(dirname "$0")/.."
# uv does not read pip's config: the authorities pip trusts (a TLS-inspecting proxy's) are handed over.
bundle="${PIP_CERT:-$(.venv/bin/python -m pip config get global.cert 2>/dev/null || true)}"
SSL_CERT_FILE="${SSL_CERT_FILE:-$bundle}" .venv/bin/uv lock --check --quiet \
    || { echo "lint | uv.lock is stale: run .venv/bin/uv lock and commit it" >&2; exit 1; }
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pyright --warnings
