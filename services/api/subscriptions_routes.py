"""Subscriptions to notifications, and the one-click decisions their links lead to."""

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from pydantic import BaseModel

from contracts.auth import TokenHolder
from contracts.notifications import Decision, SubscriptionRequest, SubscriptionView
from services.api.auth import OPEN_ROUTE_OPT
from services.api.errors import error_answers
from services.api.schemas import CommandResult, WorkflowView
from services.api.subscriptions import DecisionLinks, Subscriptions
from services.api.workflows_routes import command_response, view

SubscriptionIdPath = Annotated[str, PathParameter(pattern=r"^[0-9a-f]{32}$", description="a subscription's id")]
LinkTokenPath = Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", max_length=2000)]


class SubscriptionCreated(SubscriptionView):
    secret: str  # a webhook's signing secret (Wf-Signature), shown this once; empty for e-mail


class SubscriptionController(Controller):
    path = "/subscriptions"
    tags = ["notifications"]

    @post(operation_id="subscribe", status_code=HTTP_201_CREATED, responses=error_answers(400, 401, 422, 503))
    async def subscribe(
        self, request: Request[TokenHolder, str | None, State], data: JSONBody[SubscriptionRequest]
    ) -> SubscriptionCreated:
        """Be told when workflows wait for someone (`people`: by default the caller and its roles), are reminded,
        escalated or end: by a signed webhook (its secret is answered once, here) or an e-mail (to the token's
        profile address unless `email` names another)."""
        subscription = await request.app.state.subscriptions.create(data, request.user)
        return SubscriptionCreated.model_validate(
            SubscriptionView.of(subscription).model_dump() | {"secret": subscription.secret}
        )

    @get(operation_id="listSubscriptions", responses=error_answers(401, 503))
    async def list_subscriptions(self, request: Request[TokenHolder, str | None, State]) -> list[SubscriptionView]:
        """The caller's subscriptions (an operator's: everyone's), without their secrets."""
        subscriptions: Subscriptions = request.app.state.subscriptions
        return [SubscriptionView.of(each) for each in await subscriptions.list(request.user)]

    @delete(
        "/{subscription_id:str}",
        operation_id="unsubscribe",
        status_code=HTTP_204_NO_CONTENT,
        responses=error_answers(401, 404, 422, 503),
    )
    async def unsubscribe(
        self, request: Request[TokenHolder, str | None, State], subscription_id: SubscriptionIdPath
    ) -> None:
        """Stop a subscription (the caller's own; an operator may stop any). What it had queued is dropped."""
        await request.app.state.subscriptions.delete(subscription_id, request.user)


class DecisionPreview(BaseModel):
    """What a decision link would do: the UI's confirmation page shows it before anything changes."""

    decision: Decision
    person: str
    workflow: WorkflowView


class DecisionController(Controller):
    """Open routes: the link's signed token is the credential, bound to one person, decision and waiting state."""

    path = "/decisions"
    tags = ["notifications"]
    opt = {OPEN_ROUTE_OPT: True}

    @get("/{token:str}", operation_id="previewDecision", responses=error_answers(400, 403, 409, 410, 422, 503))
    async def preview(self, request: Request, token: LinkTokenPath) -> DecisionPreview:
        """What the link would decide, if it still may: 403 once its person may not, 409 once used or once the workflow
        moved on, 410 expired."""
        links: DecisionLinks = request.app.state.decision_links
        decision, state = await links.check(token)
        return DecisionPreview(decision=decision.decision, person=decision.person, workflow=view(state))

    @post(
        "/{token:str}",
        operation_id="decide",
        status_code=HTTP_200_OK,
        responses=error_answers(400, 403, 409, 410, 422, 503),
    )
    async def decide(self, request: Request, token: LinkTokenPath) -> Response[CommandResult]:
        """Apply the link's decision as its person, once (202 when its outcome is not known within the wait)."""
        links: DecisionLinks = request.app.state.decision_links
        decision, _ = await links.check(token)
        outcome = await request.app.state.workflows.send_to_existing(links.command(decision), None)
        await links.mark_used(decision)
        return command_response(decision.workflow_id, outcome)
