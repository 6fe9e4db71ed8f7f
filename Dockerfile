# The services' images, built with the classic builder as well as BuildKit (Debian's dockerd 20.10 has no BuildKit
# plugin). Two targets: `service` (the orchestrator, processor, broadcaster and indexer: compose picks the service with
# `command: python -m services.<name>`) and `api`, which also carries the built web UI it serves.
#
# Build arguments: PYTHON_IMAGE and NODE_IMAGE name the base images (public defaults; scripts/local_images.sh makes
# stand-ins where no registry answers). An extra CA bundle for a TLS-inspecting proxy goes in deploy/build-ca/ca.pem
# (ignored by git): the install steps trust it, and no final image contains it.
ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:22-slim

# The Python dependencies, exactly as uv.lock has them, in a virtualenv of their own, before any source is copied: a
# change of the sources rebuilds nothing above it.
FROM ${PYTHON_IMAGE} AS dependencies
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY deploy/build-ca/ /tmp/build-ca/
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY worker/pyproject.toml ./worker/
RUN if [ -f /tmp/build-ca/ca.pem ]; then export PIP_CERT=/tmp/build-ca/ca.pem SSL_CERT_FILE=/tmp/build-ca/ca.pem; fi \
    && python -m venv /opt/uv && /opt/uv/bin/pip install -q "uv==0.13.9" \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --no-cache --python "$(command -v python)"

FROM ${PYTHON_IMAGE} AS service
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --no-create-home --uid 10001 app
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
COPY contracts ./contracts
COPY runtime ./runtime
COPY services ./services
COPY worker/wfworker ./wfworker
COPY types ./types
USER app
EXPOSE 8000 8001 8002 8003 8004

# The web UI, built once here. After `service` in this file: the classic builder builds every stage up to its target.
FROM ${NODE_IMAGE} AS web
COPY deploy/build-ca/ /tmp/build-ca/
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN if [ -f /tmp/build-ca/ca.pem ]; then export NODE_EXTRA_CA_CERTS=/tmp/build-ca/ca.pem; fi \
    && npm ci --no-audit --no-fund --loglevel=error
COPY web ./
RUN npm run build

FROM service AS api
COPY --from=web /web/dist ./web/dist
