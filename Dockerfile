# One image for every service; compose.yaml picks the service with `command: python -m services.<name>`.

# The web UI is built once, here, and served by the api.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci
COPY web ./
RUN npm run build

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml ./
COPY contracts ./contracts
COPY runtime ./runtime
COPY services ./services
COPY --from=web /web/dist ./web/dist
RUN pip install . && useradd --system --no-create-home app

USER app
EXPOSE 8000 8001
