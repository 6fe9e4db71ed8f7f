"""The API's OpenAPI document: its configuration, and what Litestar's generator cannot say by itself."""

from typing import get_args

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Discriminator, OpenAPI, OpenAPIResponse, Schema, SecurityScheme

from contracts.events import Event, RecordedEvent
from services.api.errors import PROBLEM_MEDIA_TYPE

OPENAPI_CONFIG = OpenAPIConfig(
    title="Approval workflows API",
    version="1.0.0",
    components=Components(security_schemes={"token": SecurityScheme(type="http", scheme="bearer")}),
    security=[{"token": []}],  # every operation but /healthz, /metrics and /schema (services/api/auth.py)
)


def finish(document: OpenAPI) -> None:
    """Litestar documents a 400 for every route with parameters, the status of its ValidationException: this API
    answers those 422 (services/api/errors.py), so only the 400s a route declares itself stay. It writes a
    discriminated union as a bare `oneOf`: the events get their discriminator back. And it writes a pydantic RootModel
    as an object with a `root` property, whose JSON is the root itself: unwrapped."""
    for path_item in (document.paths or {}).values():
        operations = (getattr(path_item, method) for method in ("get", "put", "post", "patch", "delete"))
        for operation in filter(None, operations):
            answers = operation.responses or {}
            declared = answers.get("400")
            if isinstance(declared, OpenAPIResponse) and PROBLEM_MEDIA_TYPE not in (declared.content or {}):
                del answers["400"]
    _discriminate_events(document.components.schemas or {})
    _unwrap_root_models(document.components.schemas or {})


def _discriminate_events(schemas: dict[str, Schema]) -> None:
    """An event's `type` names its schema; it is always present in what the API answers."""
    discriminator = get_args(Event)[1].discriminator
    mapping = {}
    for event_class in get_args(get_args(Event)[0]):
        name = event_class.__name__
        mapping[event_class.model_fields[discriminator].default] = f"#/components/schemas/{name}"
        schemas[name].required = sorted({*(schemas[name].required or []), discriminator})
    event_property = (schemas[RecordedEvent.__name__].properties or {})["event"]
    assert isinstance(event_property, Schema)
    event_property.discriminator = Discriminator(property_name=discriminator, mapping=mapping)


def _unwrap_root_models(schemas: dict[str, Schema]) -> None:
    for name, schema in schemas.items():
        if set(schema.properties or {}) == {"root"}:
            root = (schema.properties or {})["root"]
            assert isinstance(root, Schema)
            schemas[name] = Schema(one_of=root.one_of, any_of=root.any_of, description=schema.description)
