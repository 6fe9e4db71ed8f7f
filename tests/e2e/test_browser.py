"""The web UI in a real browser (Debian's Chromium, driven by Playwright) against the running system: a person's whole
approval flow, two pages watching the same workflows, a page that outlives a crash of the broadcaster and catches
up with every event it missed, an expense escalated to the director and approved by a finance quorum, and Clear All.
Screenshots of the key moments land in test-artifacts/<test>/."""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

import httpx
import pytest
import yaml
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

from contracts.links import DecisionLink
from tests.conftest import PROJECT, TEST_TOKENS, bearer, eventually
from tests.e2e.browser_support import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    LINK_SECRET,
    Screenshots,
    System,
    launched_system,
    output_of_visit,
    require,
    separately_started_system,
)

pytestmark = pytest.mark.e2e

SEED = 515151
THRESHOLD = 0.25  # approval: an output above it waits for a person, anything else errors

# The approval machine's visits: 1 Unprocessed, 2 Sending To Queue (first processing), 3 Waiting For Approval,
# 4 Sending To Queue again after a reject.
FIRST_PROCESSING, SECOND_PROCESSING = 2, 4
# The expense machine's: 1 Draft, 2 Validating (the policy check), 3 Manager Approval, ...
VALIDATING = 2
POLICY_FLOOR = 0.05  # expense: a policy check output below it refuses the expense


def workflow_id(prefix: str, approved_in: tuple[int, ...]) -> str:
    """An id whose processing, in each of these visits, yields an output that waits for approval."""
    return next(
        f"{prefix}-{n}"
        for n in count()
        if all(output_of_visit(SEED, f"{prefix}-{n}", visit) > THRESHOLD for visit in approved_in)
    )


def failing_workflow_id(prefix: str) -> str:
    """An approval whose first processing yields an output that errors."""
    return next(
        f"{prefix}-{n}" for n in count() if output_of_visit(SEED, f"{prefix}-{n}", FIRST_PROCESSING) <= THRESHOLD
    )


def expense_id(prefix: str) -> str:
    """An expense whose policy check passes."""
    return next(f"{prefix}-{n}" for n in count() if output_of_visit(SEED, f"{prefix}-{n}", VALIDATING) >= POLICY_FLOOR)


@pytest.fixture
async def browser() -> AsyncIterator["Browser"]:
    require(CHROMIUM_PATH.exists(), f"no browser at {CHROMIUM_PATH} (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@dataclass
class Pages:
    """Pages of the UI, each in a context of its own (its own storage, like another person's browser). Any script
    error on any page fails the test."""

    browser: "Browser"
    system: System
    errors: list[str] = field(default_factory=list)

    async def open(self, holder: str | None = "ann") -> "Page":
        """A page signed in with the test token of `holder`, by the link `make run` prints (None: not signed in)."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        if holder is None:
            await page.goto(f"{self.system.api}/")
            return page
        await page.goto(f"{self.system.api}/#token={TEST_TOKENS[holder]}")
        await expect(page.get_by_test_id("connection")).to_have_text("Connected", timeout=20_000)
        await expect(page.get_by_test_id("identity")).to_have_text(holder)
        assert page.url.endswith("/#/"), page.url  # the token left the address bar
        return page


async def sign_in_as(page: "Page", holder: str) -> None:
    """Sign out, then in with `holder`'s token pasted into the form; the page stays where it was."""
    place = page.url
    await page.get_by_test_id("sign-out").click()
    await page.get_by_test_id("sign-in-token").fill(TEST_TOKENS[holder])
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("identity")).to_have_text(holder)
    await expect(page.get_by_test_id("connection")).to_have_text("Connected", timeout=20_000)
    assert page.url == place


@asynccontextmanager
async def pages_of(browser: "Browser", system: System) -> AsyncIterator[Pages]:
    pages = Pages(browser, system)
    yield pages
    assert not pages.errors, f"script errors in the page: {pages.errors}"


@pytest.fixture
async def launched(tmp_path, tokens_file) -> AsyncIterator[System]:
    async with launched_system(tmp_path, SEED, tokens_file) as system:
        yield system


@pytest.fixture
def screenshots(request) -> Screenshots:
    return Screenshots(request.node.name)


def row(page: "Page", workflow: str, testid: str = "workflow-row"):
    return page.locator(f'[data-testid="{testid}"][data-id="{workflow}"]')


async def create(http: httpx.AsyncClient, workflow: str, type_: str = "approval", *, process: bool = False) -> None:
    created = await http.post("/workflows", json={"type": type_, "workflow_id": workflow})
    assert created.status_code == 201, created.text
    if process:
        processed = await http.post(f"/workflows/{workflow}/process")
        assert processed.status_code == 200, processed.text


def buttons(place) -> "Locator":
    return place.get_by_test_id("actions").get_by_role("button")


async def timeline_matches_the_log(page: "Page", http: httpx.AsyncClient, workflow: str) -> list[int]:
    """The detail view's timeline lists exactly the workflow's log: every event, in order, none twice; and it is
    marked verified: the server walked its hash chain up to the last event shown."""
    log = (await http.get(f"/workflows/{workflow}/events")).json()
    entries = page.get_by_test_id("timeline-entry")
    await expect(entries).to_have_count(len(log))
    chain = page.get_by_test_id("timeline-chain")
    await expect(chain).to_have_attribute("data-verified", "true")
    await expect(chain).to_contain_text(f"each of the {len(log)} events carries the hash of the one before it")
    shown = [int(sequence) for sequence in await entries.evaluate_all("rows => rows.map(r => r.dataset.sequence)")]
    types = await entries.evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert shown == [item["sequence"] for item in log]
    assert types == [item["event"]["type"] for item in log]
    return shown


@asynccontextmanager
async def held_requests(page: "Page", pattern: str):
    """Hold the page's POSTs to `pattern` until the caller releases them, to see the page while one is on its way.
    The route stays (unrouting while a held request is being continued races with it); released, it lets all through."""
    released = asyncio.Event()

    async def hold(route):
        if route.request.method == "POST":
            await released.wait()
        await route.continue_()

    await page.route(pattern, hold)
    try:
        yield released.set
    finally:
        released.set()


async def test_a_person_processes_rejects_and_approves_a_workflow_and_sees_every_change_live(
    launched, browser, screenshots
):
    wf = workflow_id("flow", approved_in=(FIRST_PROCESSING, SECOND_PROCESSING))
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        page = await pages.open()
        await create(http, wf)  # with an id of our choosing, so that its outputs are known

        # The list: the new row arrives live; Process it.
        listed = row(page, wf)
        await expect(listed.get_by_test_id("infra-line")).to_have_text("Workflow: Waiting For Event")
        await expect(listed.get_by_test_id("business-line")).to_have_text("Business: Unprocessed")
        await listed.get_by_test_id("action-process").click()
        await expect(listed.get_by_test_id("business-line")).to_have_text("Business: Waiting For Approval")
        first_output = output_of_visit(SEED, wf, FIRST_PROCESSING)
        await expect(listed.get_by_test_id("output")).to_have_text(f"{first_output:.3f}")
        await expect(listed.get_by_test_id("action-approve")).to_be_enabled()
        await screenshots.take(page, "list-waiting-for-approval")

        # Pending approvals: Reject in place; it is processed again and comes back as attempt 2.
        await page.get_by_test_id("nav-approvals").click()
        pending = row(page, wf, "approval-row")
        await expect(pending.get_by_test_id("attempt")).to_have_text("1")
        waited = pending.get_by_test_id("waited")
        await expect(waited).to_have_text(re.compile(r"^\d+s$"))
        await expect(waited).not_to_have_text(await waited.inner_text())  # it ticks
        await pending.get_by_test_id("action-reject").click()
        await page.get_by_test_id("dialog-reason").fill("not good enough")
        await screenshots.take(page, "reject-dialog")
        await page.get_by_test_id("dialog-confirm").click()
        await expect(pending.get_by_test_id("attempt")).to_have_text("2")
        second_output = output_of_visit(SEED, wf, SECOND_PROCESSING)
        await expect(pending.get_by_test_id("output")).to_have_text(f"{second_output:.3f}")
        await screenshots.take(page, "pending-approvals-attempt-2")

        # The detail view: both machines, the diagram lit where it is; Approve ends it.
        await pending.get_by_role("link", name=wf).click()
        await expect(page.get_by_test_id("detail-business")).to_have_text("Waiting For Approval")
        lit = page.locator('[data-testid="diagram-state"][data-current="true"]')
        await expect(lit).to_have_attribute("data-state", "Waiting For Approval")
        await page.get_by_test_id("action-approve").click()
        await expect(page.get_by_test_id("detail-business")).to_have_text("Finished")
        await expect(page.get_by_test_id("detail-infra")).to_have_text("Completed")
        await expect(lit).to_have_attribute("data-state", "Finished")
        await expect(page.get_by_test_id("actions").get_by_role("button")).to_have_text(["Archive"])  # final
        await expect(page.get_by_test_id("detail-attempt")).to_have_text("2")

        await timeline_matches_the_log(page, http, wf)
        decisions = page.locator('[data-testid="timeline-entry"][data-type="TransitionTaken"]')
        await expect(decisions.filter(has_text="reject").get_by_test_id("timeline-actor")).to_have_text("ann")
        await expect(decisions.filter(has_text="approve").get_by_test_id("timeline-actor")).to_have_text("ann")
        await screenshots.take(page, "detail-finished")

        view = (await http.get(f"/workflows/{wf}")).json()
        assert (view["business_state"], view["infra_status"], view["attempt"]) == ("Finished", "Completed", 2)


async def test_a_page_without_a_valid_token_asks_for_one_and_says_why_it_refused_one(launched, browser, screenshots):
    async with pages_of(browser, launched) as pages:
        page = await pages.open(holder=None)
        await expect(page.get_by_test_id("sign-in-form")).to_be_visible()
        await expect(page.get_by_test_id("sign-in-error")).to_have_count(0)  # nothing was refused yet
        await expect(page.get_by_test_id("create")).to_have_count(0)  # nothing else is shown

        await page.get_by_test_id("sign-in-token").fill("not-a-token")
        await page.get_by_test_id("sign-in").click()
        await expect(page.get_by_test_id("sign-in-error")).to_have_text("the token is not valid")
        await screenshots.take(page, "sign-in-refused")

        await page.get_by_test_id("sign-in-token").fill(TEST_TOKENS["approver"])
        await page.get_by_test_id("sign-in").click()
        await expect(page.get_by_test_id("identity")).to_have_text("approver")
        await expect(page.get_by_test_id("connection")).to_have_text("Connected", timeout=20_000)

        # An approver may not create: the server's reason is shown.
        await page.get_by_test_id("create").click()
        await expect(page.get_by_test_id("list-error")).to_have_text(
            "Could not create a workflow: approver may not create: it takes the role requester"
        )
        await screenshots.take(page, "signed-in-as-an-approver")


async def test_two_pages_open_at_once_both_see_every_change(launched, browser, screenshots):
    wf = workflow_id("two-pages", approved_in=(FIRST_PROCESSING,))
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        ann = await pages.open("ann")
        bob = await pages.open("bob")

        # Ann creates one with the button, which says so while the request is on its way; Bob sees it appear.
        button = ann.get_by_test_id("create")
        async with held_requests(ann, "**/workflows") as release:
            await button.click()
            await expect(button).to_have_text("Creating…")
            await expect(button).to_be_disabled()
            release()
        await expect(button).to_have_text("Create Workflow")
        await expect(button).to_be_enabled()
        await expect(ann.get_by_test_id("workflow-row")).to_have_count(1)
        made_by_ann = await ann.get_by_test_id("workflow-row").first.get_attribute("data-id")
        assert made_by_ann
        await expect(row(bob, made_by_ann).get_by_test_id("business-line")).to_have_text("Business: Unprocessed")

        # Ann watches the detail of another; Bob processes it from the list, then approves it.
        await create(http, wf)
        await ann.goto(f"{launched.api}/#/workflows/{wf}")
        await expect(ann.get_by_test_id("detail-business")).to_have_text("Unprocessed")
        await row(bob, wf).get_by_test_id("action-process").click()
        await expect(ann.get_by_test_id("detail-business")).to_have_text("Waiting For Approval")
        await expect(ann.get_by_test_id("approvals-count")).to_have_text("1")
        await expect(bob.get_by_test_id("approvals-count")).to_have_text("1")
        await screenshots.take(ann, "ann-sees-bob-process")

        # Bob lists only what waits for approval, and approves it: it leaves his filtered list, live.
        await bob.get_by_test_id("filter-business").select_option("Waiting For Approval")
        await expect(bob.get_by_test_id("workflow-row")).to_have_count(1)
        await row(bob, wf).get_by_test_id("action-approve").click()
        await expect(ann.get_by_test_id("detail-business")).to_have_text("Finished")
        await expect(ann.get_by_test_id("approvals-count")).to_have_count(0)
        await expect(bob.get_by_test_id("workflow-row")).to_have_count(0)
        await bob.get_by_test_id("filter-business").select_option("")
        await expect(row(bob, wf).get_by_test_id("business-line")).to_have_text("Business: Finished")
        await expect(row(bob, wf).get_by_test_id("infra-line")).to_have_text("Workflow: Completed")
        await timeline_matches_the_log(ann, http, wf)
        approval = ann.locator('[data-testid="timeline-entry"][data-type="TransitionTaken"]').filter(has_text="approve")
        await expect(approval.get_by_test_id("timeline-actor")).to_have_text("bob")
        await screenshots.take(ann, "ann-sees-bob-approve")
        await screenshots.take(bob, "bob-list")


async def test_a_page_catches_up_with_every_event_it_missed_while_the_broadcaster_was_down(
    tmp_path, tokens_file, browser, screenshots
):
    wf = workflow_id("outage", approved_in=(FIRST_PROCESSING, SECOND_PROCESSING))
    other = workflow_id("outage-other", approved_in=(FIRST_PROCESSING,))
    # The launcher stops everything when one service dies: here each service runs on its own, so that only the
    # broadcaster can be killed and started again.
    async with (
        separately_started_system(tmp_path, SEED, tokens_file) as system,
        pages_of(browser, system) as pages,
        httpx.AsyncClient(base_url=system.api, headers=bearer()) as http,
    ):
        page = await pages.open()
        sockets = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await create(http, wf)
        await page.goto(f"{system.api}/#/workflows/{wf}")
        await page.get_by_test_id("action-process").click()
        await expect(page.get_by_test_id("detail-business")).to_have_text("Waiting For Approval")
        seen = await timeline_matches_the_log(page, http, wf)

        system.services["broadcaster"].stop(kill=True)
        await expect(page.get_by_test_id("connection")).to_have_text("Disconnected")
        last_seen = int(await page.get_by_test_id("connection").get_attribute("data-last-sequence") or "")
        assert last_seen >= seen[-1]

        # While it is down: a reject and a new round of processing, another workflow created and processed.
        rejected = await http.post(f"/workflows/{wf}/reject", json={"reason": "again"}, headers=bearer("carol"))
        assert rejected.status_code == 200, rejected.text
        await create(http, other)
        assert (await http.post(f"/workflows/{other}/process")).status_code == 200
        await system.until_state(wf, "Waiting For Approval", attempt=2)
        await system.until_state(other, "Waiting For Approval", attempt=1)
        await expect(page.get_by_test_id("detail-attempt")).to_have_text("1")  # nothing reached the page
        await screenshots.take(page, "disconnected")

        system.services["broadcaster"].start()
        await expect(page.get_by_test_id("connection")).to_have_text("Connected", timeout=20_000)
        await expect(page.get_by_test_id("detail-attempt")).to_have_text("2")
        await timeline_matches_the_log(page, http, wf)
        assert any(f"since={last_seen}" in url for url in sockets), f"no resume from {last_seen} in {sockets}"
        await screenshots.take(page, "caught-up")

        # The list caught up with the other workflow as well.
        await page.get_by_test_id("nav-list").click()
        await expect(row(page, other).get_by_test_id("business-line")).to_have_text("Business: Waiting For Approval")

        # A page that acts on an old view is told why the server refused, in the server's words.
        await page.goto(f"{system.api}/#/workflows/{wf}")
        system.services["broadcaster"].stop(kill=True)
        await expect(page.get_by_test_id("connection")).to_have_text("Disconnected")
        approved = await http.post(f"/workflows/{wf}/approve", headers=bearer("carol"))
        assert approved.status_code == 200, approved.text
        await page.get_by_test_id("action-approve").click()
        await expect(page.get_by_test_id("command-error")).to_have_text(
            "cannot approve a workflow in state 'Finished' (it is final)"
        )
        await expect(page.get_by_test_id("detail-business")).to_have_text("Finished")  # and it looked again
        await screenshots.take(page, "refused")
        system.services["broadcaster"].start()
        await expect(page.get_by_test_id("connection")).to_have_text("Connected", timeout=20_000)
        await timeline_matches_the_log(page, http, wf)


async def test_an_expense_escalates_to_the_director_and_needs_two_distinct_finance_approvers(
    launched, browser, screenshots
):
    wf = expense_id("expense")
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        page = await pages.open("ann")

        # Create it with the form. The UI lets the server choose ids; this test adds one of its own to the request the
        # form sends, so that the outputs of its steps are known.
        async def with_our_id(route: "Route") -> None:
            if route.request.method != "POST":
                return await route.continue_()
            await route.continue_(post_data=json.dumps({**(route.request.post_data_json or {}), "workflow_id": wf}))

        await page.route("**/workflows", with_our_id)
        await page.get_by_test_id("create-type").select_option("expense")
        await page.get_by_test_id("create-input-amount").fill("120.50")
        await page.get_by_test_id("create-input-manager_deadline_s").fill("3")
        await screenshots.take(page, "create-form")
        await page.get_by_test_id("create").click()
        listed = row(page, wf)
        await expect(listed.get_by_test_id("type")).to_have_text("Expense")
        await expect(listed.get_by_test_id("business-line")).to_have_text("Business: Draft")
        await page.unroute("**/workflows", with_our_id)
        view = (await http.get(f"/workflows/{wf}")).json()
        assert view["context"]["input"] == {"amount": 120.5, "manager_deadline_s": 3}

        # Its type's search fields are columns, and the list searches by them (on the server, from the index).
        await expect(listed.get_by_test_id("field-amount")).to_have_text("120.5")
        search = page.get_by_test_id("filter-search")
        await search.fill("amount>=1000")
        await search.press("Enter")
        await expect(listed).to_have_count(0)
        await search.fill("amount>=100 amount<121")
        await search.press("Enter")
        await expect(page.get_by_test_id("workflow-row")).to_have_count(1)
        await expect(listed).to_have_count(1)
        await search.fill("")
        await search.press("Enter")

        # Submit it from the detail view: it passes the policy check and waits for the manager, a deadline ticking.
        await listed.get_by_test_id("workflow-link").click()
        await expect(page.get_by_test_id("detail-type")).to_have_text("Expense")
        await expect(page.get_by_test_id("detail-input-manager_deadline_s")).to_have_text("3")
        await expect(buttons(page)).to_have_text(["Process", "Cancel", "Terminate"])
        await page.get_by_test_id("action-process").click()
        business = page.get_by_test_id("detail-business")
        await expect(business).to_have_text("Manager Approval")
        await expect(page.get_by_test_id("detail-output")).to_have_text(f"{output_of_visit(SEED, wf, VALIDATING):.3f}")
        deadline = page.get_by_test_id("deadline")
        await expect(deadline).to_have_text(re.compile(r"^[1-3]s left$"))
        await screenshots.take(page, "manager-approval-deadline")

        # Nobody approves in time: it escalates to the director, live; the countdown says the deadline passed first.
        await expect(business).to_have_text("Director Approval", timeout=15_000)
        await expect(deadline).to_have_count(0)
        lit = page.locator('[data-testid="diagram-state"][data-current="true"]')
        await expect(lit).to_have_attribute("data-state", "Director Approval")
        escalated = page.locator('[data-testid="timeline-entry"][data-type="TransitionTaken"]').filter(
            has_text="escalate"
        )
        await expect(escalated).to_have_count(1)

        # Ann may not approve for the director: the server says so. The director may.
        await page.get_by_test_id("action-approve").click()
        refusal = page.get_by_test_id("command-error")
        await expect(refusal).to_have_text("ann may not approve here (only director)")
        await screenshots.take(page, "director-approval-refused")
        await sign_in_as(page, "director")
        await page.get_by_test_id("action-approve").click()
        await expect(business).to_have_text("Finance Approval")
        await expect(refusal).to_have_count(0)

        # Finance: two distinct approvers. fin-ann's approval is recorded; a second one from her counts once.
        await sign_in_as(page, "fin-ann")
        await page.get_by_test_id("action-approve").click()
        await expect(page.get_by_test_id("command-notice")).to_have_text("fin-ann's approve is recorded: 1 of 2")
        await expect(business).to_have_text("Finance Approval")
        await page.get_by_test_id("action-approve").click()
        await expect(refusal).to_have_text("fin-ann has already sent approve; it counts once")
        await screenshots.take(page, "finance-quorum-refused")
        await sign_in_as(page, "fin-bob")
        await page.get_by_test_id("action-approve").click()
        await expect(business).to_have_text("Paid")
        await expect(page.get_by_test_id("detail-infra")).to_have_text("Completed")
        await expect(buttons(page)).to_have_text(["Archive"])

        await timeline_matches_the_log(page, http, wf)
        decisions = page.locator('[data-testid="timeline-entry"][data-type="TransitionTaken"]')
        for trigger, actor in (("director_approve", "director"), ("finance_approve", "fin-bob")):
            await expect(decisions.filter(has_text=trigger).get_by_test_id("timeline-actor")).to_have_text(actor)
        recorded = page.locator('[data-testid="timeline-entry"][data-type="InputRecorded"]')
        await expect(recorded.get_by_test_id("timeline-actor")).to_have_text("fin-ann")
        await expect(page.locator('[data-testid="timeline-entry"][data-type="CommandRejected"]')).to_have_count(2)
        await screenshots.take(page, "detail-paid")

        # Who you are is kept in the browser.
        await page.reload()
        await expect(page.get_by_test_id("identity")).to_have_text("fin-bob")
        view = (await http.get(f"/workflows/{wf}")).json()
        assert (view["business_state"], view["infra_status"]) == ("Paid", "Completed")
        # Paid by the payments worker, through the launcher's payment sandbox (the simulator answers an `output`).
        assert view["context"]["pay"]["payment_id"].startswith("pay_"), view["context"]


async def test_each_workflow_shows_the_version_of_its_type_and_draws_that_versions_machine(
    launched, browser, screenshots
):
    renamed = "Awaiting Sign-off"
    document = yaml.safe_load((PROJECT / "types" / "approval.yaml").read_text())
    document["states"][renamed] = document["states"].pop("Waiting For Approval")
    for transition in document["transitions"]:
        for end in ("source", "dest"):
            transition[end] = renamed if transition[end] == "Waiting For Approval" else transition[end]
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        await create(http, "on-v1")
        published = await http.put("/types/approval", json=document)
        assert published.status_code == 201 and published.json()["version"] == 2, published.text
        await create(http, "on-v2")
        page = await pages.open("ann")
        for workflow, version, drawn, not_drawn in (
            ("on-v1", "v1", "Waiting For Approval", renamed),
            ("on-v2", "v2", renamed, "Waiting For Approval"),
        ):
            await page.goto(f"{launched.api}/#/workflows/{workflow}")
            await expect(page.get_by_test_id("detail-version")).to_have_text(version)
            states = page.get_by_test_id("diagram").locator("[data-testid=diagram-state]")
            await expect(states.and_(page.locator(f'[data-state="{drawn}"]'))).to_have_count(1)
            await expect(states.and_(page.locator(f'[data-state="{not_drawn}"]'))).to_have_count(0)
            await screenshots.take(page, f"machine-{version}")


async def test_a_person_subscribes_to_notifications_sees_the_secret_once_and_stops_it(launched, browser, screenshots):
    async with pages_of(browser, launched) as pages:
        page = await pages.open("ada")
        await page.get_by_test_id("nav-subscriptions").click()
        await page.get_by_test_id("subscribe-address").fill("http://127.0.0.1:9/hooks")
        await page.get_by_test_id("subscribe").click()
        await expect(page.get_by_test_id("subscription-secret")).to_contain_text("whsec_")
        rows = page.get_by_test_id("subscription-row")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("http://127.0.0.1:9/hooks")
        await expect(rows.first).to_contain_text("ada, role:approver")  # whose waits: hers, by default

        await page.get_by_test_id("subscribe-channel").select_option("email")
        await page.get_by_test_id("subscribe").click()  # ada's token has no e-mail address, and none was given
        await expect(page.get_by_test_id("subscriptions-error")).to_contain_text("no e-mail address")
        await page.get_by_test_id("subscribe-address").fill("ada@example.com")
        await page.get_by_test_id("subscribe").click()
        await expect(rows).to_have_count(2)
        await screenshots.take(page, "subscriptions")

        await rows.first.get_by_role("button", name="Stop").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("ada@example.com")
        async with httpx.AsyncClient(base_url=launched.api, headers=bearer("ada")) as http:
            assert [s["channel"] for s in (await http.get("/subscriptions")).json()] == ["email"]


async def test_a_decision_link_opens_a_confirmation_page_without_signing_in_and_decides_once(
    launched, browser, screenshots
):
    wf = expense_id("linked")
    async with httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        created = await http.post(
            "/workflows", json={"workflow_id": wf, "type": "expense", "input": {"amount": 80, "manager": "ada"}}
        )
        assert created.status_code == 201, created.text
        await http.post(f"/workflows/{wf}/process")

        async def waiting_for_the_manager() -> int | None:
            events = (await http.get(f"/workflows/{wf}/events")).json()
            entered = [e["sequence"] for e in events if e["event"].get("dest") == "Manager Approval"]
            return entered[0] if entered else None

        entered = await eventually(waiting_for_the_manager)
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        token = DecisionLink.new(wf, entered, "ada", "approve", expires_at).sign(LINK_SECRET.encode())

        context = await browser.new_context()  # a browser that never signed in: the link is its credential
        page = await context.new_page()
        await page.goto(f"{launched.api}/#/decide/{token}")
        await expect(page.get_by_test_id("decision-question")).to_contain_text(f"Approve {wf}")
        await expect(page.get_by_test_id("decision-question")).to_contain_text("as ada")
        await screenshots.take(page, "decision-confirmation")
        assert (await http.get(f"/workflows/{wf}")).json()["business_state"] == "Manager Approval"  # nothing yet
        await page.get_by_test_id("decision-confirm").click()
        await expect(page.get_by_test_id("decision-done")).to_contain_text(f"Done: {wf} is now in")
        decided = [e["event"] for e in (await http.get(f"/workflows/{wf}/events")).json()]
        assert [e["actor"] for e in decided if e.get("trigger") == "manager_approve"] == ["ada"]

        await page.reload()
        await expect(page.get_by_test_id("decision-refused")).to_have_text(
            "This link was used already: each link decides once."
        )
        await screenshots.take(page, "decision-used")
        await context.close()


async def test_buttons_follow_each_state_and_clear_all_archives_or_cancels_everything(launched, browser, screenshots):
    unprocessed = "clear-new"
    waiting = workflow_id("clear-waiting", approved_in=(FIRST_PROCESSING,))
    finished = workflow_id("clear-finished", approved_in=(FIRST_PROCESSING,))
    errored = failing_workflow_id("clear-error")
    expense = expense_id("clear-expense")
    terminated = "clear-terminated"
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        await create(http, unprocessed)
        await create(http, terminated)
        for workflow in (waiting, finished, errored):
            await create(http, workflow, process=True)
        await create(http, expense, "expense", process=True)
        await launched.until_state(finished, "Waiting For Approval", attempt=1)
        assert (await http.post(f"/workflows/{finished}/approve")).status_code == 200
        await launched.until_state(waiting, "Waiting For Approval", attempt=1)
        await launched.until_state(errored, "Error", attempt=1)
        await launched.until_state(expense, "Manager Approval", attempt=1)
        page = await pages.open()

        # Each row offers exactly what its state accepts (GET /types); terminate is not among them.
        for workflow, offered in (
            (unprocessed, ["Process", "Cancel"]),
            (waiting, ["Approve", "Reject", "Cancel"]),
            (finished, ["Archive"]),
            (errored, ["Retry", "Archive"]),
            (expense, ["Approve", "Reject", "Cancel"]),
        ):
            await expect(buttons(row(page, workflow))).to_have_text(offered)
        await expect(row(page, expense).get_by_test_id("type")).to_have_text("Expense")

        # Pending approvals: both kinds, the expense with its manager's deadline (24 h by default) ticking.
        await page.get_by_test_id("nav-approvals").click()
        await expect(page.get_by_test_id("approval-row")).to_have_count(2)
        await expect(row(page, expense, "approval-row").get_by_test_id("business-state")).to_have_text(
            "Manager Approval"
        )
        await expect(row(page, expense, "approval-row").get_by_test_id("deadline")).to_have_text(
            re.compile(r"^2[34]h \d\dm left$")
        )
        await expect(row(page, waiting, "approval-row").get_by_test_id("deadline")).to_have_count(0)
        await screenshots.take(page, "pending-approvals")

        # Terminate, in the detail view only, once confirmed: it ends Errored, and can then only be archived.
        await page.goto(f"{launched.api}/#/workflows/{terminated}")
        await expect(buttons(page)).to_have_text(["Process", "Cancel", "Terminate"])
        await page.get_by_test_id("action-terminate").click()
        await page.get_by_test_id("dialog-cancel").click()
        await expect(page.get_by_test_id("detail-infra")).to_have_text("Waiting For Event")
        await page.get_by_test_id("action-terminate").click()
        await page.get_by_test_id("dialog-reason").fill("wrong form")
        await page.get_by_test_id("dialog-confirm").click()
        await expect(page.get_by_test_id("detail-infra")).to_have_text("Errored")
        await expect(page.get_by_test_id("detail-error")).to_have_text("Terminated: wrong form")
        await expect(buttons(page)).to_have_text(["Archive"])

        # Clear All says what it will do; declined, nothing happens.
        await page.get_by_test_id("nav-list").click()
        rows = page.get_by_test_id("workflow-row")
        await expect(rows).to_have_count(6)
        for ended in (finished, terminated):  # as the page was told, even before the index has it (CI saw it lag)
            await expect(buttons(row(page, ended))).to_have_text(["Archive"])
        await screenshots.take(page, "before-clear-all")
        await page.get_by_test_id("clear-all").click()
        dialog = page.get_by_test_id("dialog")
        await expect(dialog).to_contain_text("Archives the 3 that have ended, and cancels the 3 still open")
        await screenshots.take(page, "clear-all-dialog")
        await page.get_by_test_id("dialog-cancel").click()
        await expect(dialog).to_have_count(0)
        await expect(rows).to_have_count(6)

        # Confirmed: the ended ones are archived, the others cancelled then archived; the list is empty.
        await page.get_by_test_id("clear-all").click()
        await page.get_by_test_id("dialog-confirm").click()
        await expect(rows).to_have_count(0)
        await expect(page.get_by_test_id("empty")).to_have_text("No workflows yet: create one.")
        await expect(page.get_by_test_id("list-error")).to_have_count(0)
        await expect(page.get_by_test_id("approvals-count")).to_have_count(0)
        await screenshots.take(page, "after-clear-all")

        async def listed_none() -> bool:  # the list comes from the index, which may lag the read model a little
            return (await http.get("/workflows")).json() == []

        await eventually(listed_none)
        archived = {view["id"]: view for view in (await http.get("/workflows", params={"archived": "true"})).json()}
        assert set(archived) == {unprocessed, waiting, finished, errored, expense, terminated}
        assert all(view["archived"] for view in archived.values())
        stopped = {workflow: view["stopped"] for workflow, view in archived.items()}
        assert stopped == {
            unprocessed: "cancelled",
            waiting: "cancelled",
            expense: "cancelled",
            finished: None,
            errored: None,
            terminated: "terminated",
        }

        # An archived workflow's detail: where it stopped, and nothing left to do.
        await page.goto(f"{launched.api}/#/workflows/{waiting}")
        await expect(page.get_by_test_id("detail-stopped")).to_have_text("cancelled in this state · archived")
        await expect(buttons(page)).to_have_count(0)


AXE = PROJECT / "web" / "node_modules" / "axe-core" / "axe.min.js"


async def serious_accessibility_violations(page: "Page") -> list[str]:
    """What axe-core finds on the page that is serious or critical: each rule, with the first elements that break it."""
    if not await page.evaluate("() => 'axe' in window"):
        await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("async () => (await axe.run()).violations")
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']}: "
        + "; ".join(f"{node['target']} {node['failureSummary']}" for node in violation["nodes"][:4])
        for violation in found
        if violation["impact"] in ("serious", "critical")
    ]


async def test_the_ui_keeps_its_filters_in_the_address_and_every_view_passes_axe_in_light_and_dark(
    launched, browser, screenshots
):
    waiting = workflow_id("a11y", approved_in=(FIRST_PROCESSING,))
    async with pages_of(browser, launched) as pages, httpx.AsyncClient(base_url=launched.api, headers=bearer()) as http:
        await create(http, waiting, process=True)
        await create(http, "a11y-expense", "expense")
        await launched.until_state(waiting, "Waiting For Approval", attempt=1)
        page = await pages.open()

        # The filters are kept in the address: a reload shows the same list.
        await page.get_by_test_id("filter-type").select_option("expense")
        await expect(page.get_by_test_id("workflow-row")).to_have_count(1)
        assert page.url.endswith("#/?type=expense"), page.url
        await page.reload()
        await expect(page.get_by_test_id("filter-type")).to_have_value("expense")
        await expect(page.get_by_test_id("workflow-row")).to_have_count(1)
        await page.get_by_test_id("filter-type").select_option("")

        # Open a workflow by its id; an unknown id says so.
        await page.get_by_test_id("go-to-id").fill("nobody-here")
        await page.get_by_test_id("go-to").click()
        await expect(page.get_by_test_id("list-error")).to_contain_text("No workflow nobody-here")
        await page.get_by_test_id("go-to-id").fill(waiting)
        await page.get_by_test_id("go-to").click()
        await expect(page.get_by_test_id("detail-id")).to_have_text(waiting)

        # An event's JSON, and a copy of it.
        first = page.get_by_test_id("timeline-entry").first.get_by_test_id("event-json")
        await first.locator("summary").click()
        assert json.loads(await first.locator("pre").inner_text())["type"] == "WorkflowCreated"
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await first.get_by_test_id("copy-json").click()
        await expect(first.get_by_role("status")).to_have_text("Copied")
        assert json.loads(await page.evaluate("navigator.clipboard.readText()"))["type"] == "WorkflowCreated"

        # The dialog keeps focus inside and gives it back to the button that opened it.
        opener = page.get_by_test_id("action-reject")
        await opener.focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_test_id("dialog-confirm")).to_be_focused()
        for _ in range(6):
            await page.keyboard.press("Tab")
            inside = await page.evaluate("() => !!document.activeElement.closest('[data-testid=dialog]')")
            assert inside, "focus left the dialog"
        await page.keyboard.press("Escape")
        await expect(page.get_by_test_id("dialog")).to_have_count(0)
        await expect(opener).to_be_focused()

        # Untouched, the theme is the system's, and follows it.
        await expect(page.get_by_test_id("theme")).to_have_text("Theme: auto")
        for scheme in ("dark", "light"):
            await page.emulate_media(color_scheme=scheme)
            await page.wait_for_function(f"() => document.documentElement.dataset.theme === '{scheme}'", timeout=5000)

        for theme in ("light", "dark"):
            while await page.get_by_test_id("theme").inner_text() != f"Theme: {theme}":
                await page.get_by_test_id("theme").click()
            for place in (f"#/workflows/{waiting}", "#/", "#/approvals"):
                await page.goto(f"{launched.api}/{place}")
                await expect(page.get_by_test_id("connection")).to_have_text("Connected")
                await page.wait_for_timeout(300)  # the list and the timeline drawn
                assert await serious_accessibility_violations(page) == [], (theme, place)
            await screenshots.take(page, f"approvals-{theme}")


MANY = 5000


@pytest.mark.timeout(600)  # ten thousand commands through the system first
async def test_the_list_and_the_timeline_page_through_five_thousand_rows(tmp_path, tokens_file, browser):
    # No rate limit on the commands: this test sends ten thousand of them.
    async with (
        launched_system(tmp_path, SEED, tokens_file, WF_API_COMMANDS_PER_S="1000000") as system,
        pages_of(browser, system) as pages,
        httpx.AsyncClient(base_url=system.api, headers=bearer(), timeout=60) as http,
    ):
        sending = asyncio.Semaphore(32)

        async def send(path: str, body: dict) -> None:
            async with sending:
                answer = await http.post(path, params={"wait": 0}, json=body)
            assert answer.status_code == 202, answer.text

        # Five thousand workflows, created and left unprocessed; the first gets five thousand approvals, each of
        # which it refuses: each refusal is an event of its log.
        await asyncio.gather(*(send("/workflows", {"workflow_id": f"many-{n:04d}"}) for n in range(MANY)))
        await asyncio.gather(*(send("/workflows/many-0000/approve", {}) for _ in range(MANY)))

        async def counted(path: str, cursor: str) -> int:
            total, query = 0, {"limit": 1000}
            while True:
                answer = await http.get(path, params=query)
                total += len(answer.json())
                if not (following := answer.headers.get("X-Next-Cursor")):
                    return total
                query = {"limit": 1000, cursor: following}

        async def all_there() -> bool:
            listed = await counted("/workflows", "cursor")
            return listed == MANY and await counted("/workflows/many-0000/events", "after") == MANY + 2

        await eventually(all_there, timeout_s=240)

        page = await pages.open("ann")
        rows = page.get_by_test_id("workflow-row")
        await expect(rows).to_have_count(200)  # one page at first
        more = page.get_by_test_id("load-more")
        while await more.count():
            shown = await rows.count()
            await more.click()
            await expect(rows).not_to_have_count(shown, timeout=20_000)
        ids = await rows.evaluate_all("rows => rows.map((row) => row.dataset.id)")
        assert len(ids) == len(set(ids)) == MANY

        await page.goto(f"{system.api}/#/workflows/many-0000")
        entries = page.get_by_test_id("timeline-entry")
        await expect(entries).to_have_count(200)
        more = page.get_by_test_id("timeline-more")
        while await more.count():
            shown = await entries.count()
            await more.click()
            await expect(entries).not_to_have_count(shown, timeout=20_000)
        sequences = [int(n) for n in await entries.evaluate_all("rows => rows.map((row) => row.dataset.sequence)")]
        assert len(sequences) == len(set(sequences)) == MANY + 2 and sequences == sorted(sequences)
        await expect(page.get_by_test_id("timeline-chain")).to_have_attribute("data-verified", "true", timeout=20_000)
