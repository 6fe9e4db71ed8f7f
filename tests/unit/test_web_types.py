"""The web UI's TypeScript types are generated from the API's OpenAPI document, and are not behind it."""

import subprocess
from pathlib import Path

from services.api.export_schema import document

WEB = Path(__file__).parents[2] / "web"
BEHIND = "behind the API: regenerate with `make web-types`"


def test_the_web_keeps_the_apis_current_document():
    assert (WEB / "openapi.json").read_text() == document(), f"web/openapi.json is {BEHIND}"


def test_the_web_types_are_generated_from_that_document(tmp_path):
    generated = tmp_path / "api.ts"
    command = ["npx", "--no-install", "openapi-typescript", "openapi.json", "-o", str(generated)]
    subprocess.run(command, cwd=WEB, check=True, capture_output=True, timeout=120)
    assert (WEB / "src/generated/api.ts").read_text() == generated.read_text(), f"web/src/generated/api.ts is {BEHIND}"
