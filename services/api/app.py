"""The API's wiring: routes, the NATS connection's lifespan, the error policy and the static web page."""

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from contracts.topology import MAX_COMMAND_BYTES
from runtime.http_metrics import prometheus
from runtime.index_db import connect
from runtime.nats_link import NatsLink
from runtime.tokens import load_tokens
from services.api.asyncapi_routes import asyncapi, asyncapi_page
from services.api.auth import OPEN_ROUTE_OPT, authentication, commands_rate_limit, holder_who_may
from services.api.bulk_routes import get_bulk, start_bulk
from services.api.bulks import BulkRunner, BulkStore
from services.api.errors import EXCEPTION_HANDLERS, PROBLEM_DETAILS
from services.api.index import WorkflowIndex
from services.api.openapi import OPENAPI_CONFIG, finish
from services.api.operations_routes import client_config, healthz, who_am_i
from services.api.settings import ApiSettings
from services.api.subscriptions import DecisionLinks, Subscriptions
from services.api.subscriptions_routes import DecisionController, SubscriptionController
from services.api.types_routes import TypeController
from services.api.workflows import Workflows
from services.api.workflows_routes import WorkflowController, inbox


def provide_workflows(state: State) -> Workflows:
    return state.workflows


def create_app(settings: ApiSettings | None = None) -> Litestar:
    settings = settings or ApiSettings()
    tokens = load_tokens(settings)  # first: with no tokens, nothing else starts
    topology = settings.topology
    streams = [topology.events_stream, topology.commands_stream]
    streams += [topology.kv_stream(config.bucket) for config in topology.bucket_configs()]
    writes = [topology.commands_subject(), topology.kv_subjects(topology.bulk_bucket)]
    link = NatsLink(settings, name="api", streams=streams, writes=writes)
    index = WorkflowIndex(connect(settings.index_url))
    workflows = Workflows(link, settings)
    bulks = BulkRunner(link, BulkStore(link, settings), workflows, tokens, settings)
    subscriptions = Subscriptions(link, topology)
    decision_links = DecisionLinks(link, topology, settings.link_key, workflows.find, holder_who_may(tokens))
    metrics, metrics_route = prometheus("api")
    route_handlers = [WorkflowController, TypeController, healthz, client_config, inbox, who_am_i, metrics_route]
    route_handlers += [start_bulk, get_bulk, SubscriptionController, DecisionController, asyncapi, asyncapi_page]
    if settings.web_dir.is_dir():  # open: the page asks for a token, then sends it with every request
        web_page = create_static_files_router(
            "/", directories=[settings.web_dir], html_mode=True, opt={OPEN_ROUTE_OPT: True}
        )
        route_handlers.append(web_page)
    app = Litestar(
        route_handlers=route_handlers,
        dependencies={"workflows": Provide(provide_workflows, sync_to_thread=False)},
        state=State(
            {"settings": settings, "link": link, "workflows": workflows, "index": index, "bulks": bulks}
            | {"subscriptions": subscriptions, "decision_links": decision_links}
        ),
        lifespan=[link.lifespan, index.lifespan, bulks.lifespan],  # left in reverse: bulks release their leases first
        # In this order: metrics count every answer; a caller is known before its rate is counted.
        middleware=[metrics.middleware, authentication(tokens), commands_rate_limit(settings.commands_per_second)],
        request_max_body_size=MAX_COMMAND_BYTES,  # larger bodies answer 413 before they are read further
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[PROBLEM_DETAILS],
        logging_config=None,  # not Litestar's own: its lines go through runtime.observability's, as JSON
        openapi_config=OPENAPI_CONFIG,
    )
    finish(app.openapi_schema)
    return app
