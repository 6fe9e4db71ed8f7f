"""The API's OpenAPI document says what the API answers: typed workflows, discriminated events, problem details."""

import pytest

from contracts.state import WorkflowState
from services.api.app import create_app
from services.api.schemas import WorkflowView
from services.api.settings import ApiSettings


@pytest.fixture(scope="module")
def document() -> dict:
    return create_app(ApiSettings(WF_AUTH="off")).openapi_schema.to_schema()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_the_workflow_view_is_the_read_model_without_the_engines_bookkeeping():
    assert set(WorkflowView.model_fields) == set(WorkflowState.model_fields) - {"bookkeeping"}


def test_a_workflow_is_typed_field_by_field(document):
    answer = document["paths"]["/workflows/{workflow_id}"]["get"]["responses"]["200"]
    reference = answer["content"]["application/json"]["schema"]["$ref"]
    view = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(view["properties"]) == set(WorkflowView.model_fields)
    assert set(view["required"]) == set(WorkflowView.model_fields)  # every field is always present
    listed = document["paths"]["/workflows"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"type": "array", "items": {"$ref": reference}}


def test_events_are_told_apart_by_their_type(document):
    event = document["components"]["schemas"]["RecordedEvent"]["properties"]["event"]
    mapping = event["discriminator"]["mapping"]
    assert event["discriminator"]["propertyName"] == "type"
    assert {"WorkflowCreated", "TransitionTaken", "CommandRejected"} <= set(mapping)
    for name, reference in mapping.items():
        assert document["components"]["schemas"][reference.rsplit("/", 1)[1]]["properties"]["type"]["const"] == name


def test_only_the_400s_the_api_answers_are_documented_and_validation_is_422(document):
    with_400 = {name for name, operation in operations(document) if "400" in operation["responses"]}
    # A bad filter; a body that is not JSON; a decision link that is not one.
    searches = {"GET /workflows", "GET /me/inbox"}
    links = {"GET /decisions/{token}", "POST /decisions/{token}"}
    with_body = {name for name, operation in operations(document) if "requestBody" in operation}
    assert with_400 == searches | links | with_body
    assert with_body >= {"POST /workflows", "POST /workflows/{workflow_id}/approve", "POST /workflows/bulk/{action}"}
    assert "422" in document["paths"]["/workflows/{workflow_id}"]["get"]["responses"]


def test_errors_are_problem_details(document):
    for name, operation in operations(document):
        for status, answer in operation["responses"].items():
            if int(status) >= 400 and name != "GET /healthz":
                assert list(answer["content"]) == ["application/problem+json"], (name, status)
    problem = document["components"]["schemas"]["Problem"]
    assert {"title", "status", "detail"} <= set(problem["required"])


def test_a_created_workflow_answers_with_its_location(document):
    created = document["paths"]["/workflows"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
