#!/usr/bin/env bash
# Installs what `make run` needs, and with --test what `make test` needs too. Cheap when nothing changed, so the make
# targets run it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need, each as `command=package`: a package whose command is already on PATH is not
# installed. chromium: the browser the browser tests drive (Playwright's own browser download cannot work here).
# fuse3: FUSE (fusermount3, libfuse3) for the power-loss test's file system.
# postgresql: a server the index's tests start their own of (tests/postgres.py); its programs stay off PATH
# (/usr/lib/postgresql/<version>/bin), so the check is pg_ctlcluster, which the same install puts on it.
# docker.io (dockerd), debootstrap and docker-compose: the compose test (tests/containers) builds and runs the images on
# an engine of this machine's own, from local base images (scripts/local_images.sh).
TEST_APT_PACKAGES="docker-compose=docker-compose dockerd=docker.io debootstrap=debootstrap chromium=chromium
fusermount3=fuse3 pg_ctlcluster=postgresql"

PYTHON="${PYTHON:-python3}"
VENV=.venv
# The uv.lock (and pyproject.toml) last installed: packages are installed again only when either differs.
INSTALLED_LOCK="$VENV/.installed-lock"
UV_VERSION=0.13.9  # the same in pyproject.toml's test extra and the Dockerfile

say() { echo "bootstrap | $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then return; fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        say "needs Python >= 3.11 as '$PYTHON' (set PYTHON=/path/to/python3.11 to choose another)" >&2
        exit 1
    fi
    say "creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
}

ensure_python_packages() {
    if cat pyproject.toml uv.lock | cmp -s - "$INSTALLED_LOCK"; then return; fi
    say "installing Python packages: the versions of uv.lock"
    if [ "$("$VENV/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
        # This machine's pip config lists package indexes that do not exist for most packages: pip warns per package.
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q "uv==$UV_VERSION" \
            2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
    fi
    # uv does not read pip's config: the authorities pip trusts (a TLS-inspecting proxy's) are handed over.
    local bundle="${PIP_CERT:-$("$VENV/bin/python" -m pip config get global.cert 2>/dev/null || true)}"
    SSL_CERT_FILE="${SSL_CERT_FILE:-$bundle}" UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON_DOWNLOADS=never \
        "$VENV/bin/uv" sync --frozen --extra test --python "$VENV/bin/python" --quiet
    cat pyproject.toml uv.lock > "$INSTALLED_LOCK"
}

# The web UI (web/, Vue + Vite) is served built, from web/dist. Build it when it is missing or older than a source.
ensure_web_build() {
    local built=web/dist/index.html
    local sources=(web/src web/index.html web/package.json web/package-lock.json web/vite.config.ts web/tsconfig.json)
    if [ -f "$built" ] && [ -z "$(find "${sources[@]}" -newer "$built" -print -quit)" ]; then return; fi
    if ! command -v npm >/dev/null; then
        say "building the web UI needs Node.js (>= 20.19) and npm: install them, then run this again" >&2
        exit 1
    fi
    # npm ci wipes node_modules: only when the lock changed since the last install (npm keeps a copy inside).
    if [ ! web/node_modules/.package-lock.json -nt web/package-lock.json ]; then
        say "installing the web UI's packages (npm ci)"
        (cd web && npm ci --no-audit --no-fund --loglevel=error)
    fi
    say "building the web UI (web/dist)"
    local output
    if ! output=$(cd web && npm run --silent build 2>&1); then
        echo "$output" >&2
        say "the web UI did not build" >&2
        exit 1
    fi
}

ensure_system_packages() {
    local missing=() entry
    for entry in $TEST_APT_PACKAGES; do
        command -v "${entry%%=*}" >/dev/null || missing+=("${entry#*=}")
    done
    if [ ${#missing[@]} -eq 0 ]; then return; fi
    if ! command -v apt-get >/dev/null; then
        say "install these yourself (no apt-get here): ${missing[*]}" >&2
        exit 1
    fi
    say "installing ${missing[*]} with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A Docker engine for the compose test: started when none answers and this user may (root, or sudo without a
# password); else the test is skipped and says why.
ensure_docker_engine() {
    if docker info >/dev/null 2>&1; then return; fi
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
        say "no Docker engine answers and this user cannot start one: the compose test will be skipped"
        return
    fi
    say "starting dockerd (log: /var/log/wf-dockerd.log)"
    as_root sh -c 'nohup dockerd >/var/log/wf-dockerd.log 2>&1 &'
    for _ in $(seq 60); do
        if docker info >/dev/null 2>&1; then return; fi
        sleep 0.5
    done
    say "dockerd did not answer within 30 s (see /var/log/wf-dockerd.log): the compose test will be skipped" >&2
}

ensure_venv
ensure_python_packages
ensure_web_build
if [ "${1:-}" = "--test" ]; then
    ensure_system_packages
    ensure_docker_engine
fi
