"""Schemathesis against the API's own OpenAPI document: the real api service and a real orchestrator over a real
nats-server, every operation fed generated requests, valid ones (positive) and deliberately invalid ones (negative),
with a token and without one. No answer may be a 5xx, and every answer must be one the document declares, in the
shape it declares; without a token, every operation but the open ones answers 401.

Not checked: that every schema-valid request is accepted. The document cannot say all the API checks: a type the
orchestrator does not know, an input duration out of range, a cursor the API never handed out, a body field it does
not know (Litestar's document leaves out that request bodies forbid them) are all refused 422, by design.

Bounded and repeatable: a fixed number of examples per operation and mode, derandomized, so CI sends the same
requests each run. (Schemathesis' pytest plugin is not used: its lazy, fixture-loaded schema breaks on pytest 9.)"""

import asyncio
from collections import defaultdict

import httpx
import nats
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from services.launcher.nats_server import free_port
from services.orchestrator.maintenance import Report, check
from tests.conftest import TEST_TOKENS, bearer, eventually

pytestmark = pytest.mark.integration

EXISTING = ["fuzz-unprocessed", "fuzz-processing", "fuzz-cancelled"]  # workflows in three states, for commands
KNOWN_PATH_VALUES = {"workflow_id": EXISTING, "name": ["approval", "expense"], "version": ["1"]}  # and a bulk's id
# The rest need a token (services/api/auth.py); a decision link is its own credential.
OPEN_OPERATIONS = {
    "GET /healthz",
    "GET /decisions/{token}",
    "POST /decisions/{token}",
    "GET /asyncapi",
    "GET /asyncapi.html",
}
# An unknown query parameter is ignored, as HTTP APIs do: not a request to refuse.
GENERATION = {"allow-extra-parameters": False}
# The token where the document asks for one: one with every role, so that requests reach the handlers.
WITH_TOKEN = schemathesis.Config.from_dict(
    {"auth": {"openapi": {"token": {"bearer": TEST_TOKENS["admin"]}}}, "generation": GENERATION}
)
WITHOUT_TOKEN = schemathesis.Config.from_dict({"generation": GENERATION})
FUZZ_SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    # hypothesis's HealthCheckMeta.__iter__ is unannotated: pyright takes its items for the metaclass
    suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
)


@pytest.fixture
def api_url(nats_url, topology, start_service) -> str:
    """The api, the orchestrator and the indexer as the launcher runs them."""
    port, indexer_port = free_port(), free_port()
    start_service("orchestrator", nats_url, topology, WF_SEND_FAILURE_RATE="0")
    # The lists and the bulk actions read its index: waited for below, with its tables made and caught up.
    start_service("indexer", nats_url, topology, WF_INDEXER_PORT=str(indexer_port))
    # A budget of commands the fuzzing never spends: the rate limit is not what is fuzzed here.
    limits = {"WF_COMMAND_TIMEOUT_S": "2", "WF_API_COMMANDS_PER_S": "100000"}
    start_service("api", nats_url, topology, WF_API_PORT=str(port), **limits)
    base_url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                answers = [await client.get(f"{url}/healthz") for url in (base_url, f"http://127.0.0.1:{indexer_port}")]
                return all(answer.status_code == 200 for answer in answers)
        except httpx.HTTPError:
            return False

    asyncio.run(eventually(healthy, timeout_s=30))
    with httpx.Client(base_url=base_url, headers=bearer("admin")) as client:
        for workflow_id, start in zip(EXISTING, (False, True, False), strict=True):
            assert client.post("/workflows", json={"workflow_id": workflow_id, "start": start}).status_code == 201
        assert client.post(f"/workflows/{EXISTING[2]}/cancel").status_code == 200
        bulk = client.post("/workflows/bulk/archive?business_state=Cancelled")
        assert bulk.status_code == 202, bulk.text
    KNOWN_PATH_VALUES["bulk_id"] = [bulk.json()["id"]]
    return base_url


def strategies_of(operation) -> dict[str, SearchStrategy]:
    """Valid requests; invalid ones, where the operation takes anything to get wrong; and valid ones about workflows
    and types that exist (random ids name none), where it takes one in its path."""
    strategies = {mode.value: operation.as_strategy(generation_mode=mode) for mode in GenerationMode}
    if not (any(operation.iter_parameters()) or operation.body):
        del strategies[GenerationMode.NEGATIVE.value]
    for parameter in operation.path_parameters:
        if known := KNOWN_PATH_VALUES.get(parameter.name):
            strategies[f"known {parameter.name}"] = st.sampled_from(known).flatmap(
                lambda value: operation.as_strategy(path_parameters={parameter.name: value})
            )
    named = {p.name: KNOWN_PATH_VALUES[p.name] for p in operation.path_parameters if p.name in KNOWN_PATH_VALUES}
    if len(named) > 1:  # e.g. a type's name and one of its versions: each known alone names nothing that exists
        strategies["known all"] = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in named.items()}).flatmap(
            lambda values: operation.as_strategy(path_parameters=values)
        )
    return strategies


async def checked(nats_url: str, topology) -> Report:
    nc = await nats.connect(nats_url)
    try:
        return await check(nc.jetstream(), topology)
    finally:
        await nc.drain()


def explained(error: BaseException) -> str:
    """Every failure in a group (Hypothesis and schemathesis group theirs), each as schemathesis tells it."""
    if isinstance(error, BaseExceptionGroup) and not isinstance(error, FailureGroup):
        return "\n".join(explained(each) for each in error.exceptions)
    return f"{type(error).__name__}: {error}"


def fuzz(api_url: str, config: schemathesis.Config, examples: int) -> tuple[dict[str, set[int]], list[str]]:
    """Every operation of the served document fed generated requests: the statuses each answered, and what went
    wrong (each with a curl command that repeats it)."""
    schema = schemathesis.openapi.from_url(f"{api_url}/schema/openapi.json", config=config)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation the document describes so badly it cannot be fuzzed
        operations.append(result.ok())
    assert len(operations) > 10, [operation.label for operation in operations]
    statuses: dict[str, set[int]] = defaultdict(set)
    failures = []
    for operation in operations:
        for name, cases in strategies_of(operation).items():

            @settings(FUZZ_SETTINGS, max_examples=examples)
            @given(case=cases)
            def answers_as_documented(case) -> None:
                response = case.call_and_validate(api_url, timeout=10, excluded_checks=[positive_data_acceptance])
                statuses[operation.label].add(response.status_code)

            try:
                answers_as_documented()
            except (Exception, BaseExceptionGroup) as error:  # schemathesis groups its failures: report them all
                failures.append(f"{operation.label} ({name}): {explained(error)}")
    return statuses, failures


UNGUESSABLE = (
    "GET /decisions/{token}",
    "POST /decisions/{token}",
    "DELETE /subscriptions/{subscription_id}",
    "PUT /types/{name}",  # a sound definition (every state reachable, every trigger taken, ...)
    "POST /workflows/{workflow_id}/reassign",  # a wait still open: the operations fuzzed before it end every workflow
)


def test_every_operation_answers_as_its_schema_says_and_never_5xx(api_url, nats_url, topology):
    statuses, failures = fuzz(api_url, WITH_TOKEN, examples=25)

    assert not failures, "\n\n".join(failures)
    # Requests reached the handlers: every operation also answered a success, but those a success of takes what a
    # fuzzer cannot guess (a link's signature, an existing subscription's id).
    guessable = {label: answered for label, answered in statuses.items() if label not in UNGUESSABLE}
    never_succeeded = {
        label: answered for label, answered in guessable.items() if not any(200 <= s < 300 for s in answered)
    }
    assert not never_succeeded, never_succeeded
    assert set(UNGUESSABLE) <= statuses.keys()
    report = asyncio.run(checked(nats_url, topology))  # what the commands did: legal logs, the read model their replay
    assert report.ok and report.workflows > len(EXISTING), report.summary()


def test_without_a_token_every_operation_but_the_open_ones_answers_401(api_url):
    statuses, failures = fuzz(api_url, WITHOUT_TOKEN, examples=5)

    assert not failures, "\n\n".join(failures)
    refused = {label: answered for label, answered in statuses.items() if label not in OPEN_OPERATIONS}
    assert refused and all(answered == {401} for answered in refused.values()), refused


def test_one_idempotency_key_sent_for_two_workflows_applies_to_each(api_url):
    # Found by the fuzzing: the broker's dedup took the second for a repeat of the first and dropped it, and the API
    # waited for an outcome that never came, to answer 202.
    with httpx.Client(base_url=api_url, headers=bearer("admin") | {"Idempotency-Key": "the-same-key"}) as client:
        answers = [client.post(f"/workflows/{workflow_id}/cancel?wait=5") for workflow_id in EXISTING[:2]]

    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    assert [answer.json()["workflow"]["infra_status"] for answer in answers] == ["Cancelled", "Cancelled"]
