"""`python -m services.api.export_schema`: the API's OpenAPI document, as GET /schema/openapi.json serves it, as JSON
on stdout. The web UI's TypeScript types are generated from it (web/openapi.json; `make web-types`)."""

import json
import sys

from services.api.app import create_app
from services.api.settings import ApiSettings


def document() -> str:
    app = create_app(ApiSettings(WF_AUTH="off"))  # the document is the same whoever may call the API
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document())
