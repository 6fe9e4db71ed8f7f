# The two commands a fresh machine needs: `make run` runs the whole system, `make test` runs the tests.
# Each installs what it needs first (scripts/bootstrap.sh; fast when nothing changed).
.PHONY: run test lint web-types types-schema

# Extra arguments: to pytest for `make test` (ARGS="-k launcher"), to the launcher for `make run`
# (ARGS="--cluster --replicas 2": a 3-node JetStream cluster, two orchestrators and two processors).
ARGS ?=

run:
	bash scripts/bootstrap.sh
	.venv/bin/python -m services.launcher $(ARGS)

test:
	bash scripts/bootstrap.sh --test
	.venv/bin/python -m pytest $(ARGS)

# What CI checks besides the tests: uv.lock matches pyproject.toml, ruff's lint and format, pyright (scripts/lint.sh).
lint:
	bash scripts/bootstrap.sh
	bash scripts/lint.sh

# The web UI's TypeScript types, generated from the API's OpenAPI document (after a change to what the API speaks;
# tests/unit/test_web_types.py fails while they are behind).
web-types:
	bash scripts/bootstrap.sh
	.venv/bin/python -m services.api.export_schema > web/openapi.json
	cd web && npm run types

# The JSON Schema of a type definition, for editors (types/*.yaml name it); a unit test fails while it is behind.
types-schema:
	bash scripts/bootstrap.sh
	.venv/bin/python -c 'import json; from contracts.definitions import TypeDefinition as T; print(json.dumps(T.model_json_schema(), indent=2))' > types/definition.schema.json
