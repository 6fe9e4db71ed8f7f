"""People in the loop, through the real orchestrator and processor, the notifier, a real HTTP receiver and a real SMTP
server (aiosmtpd): an expense waiting for its manager sends a signed webhook and an e-mail whose link approves it;
reminders and escalations come on time; a receiver that was down gets everything, in order; a notifier killed with -9
sends nothing twice under another key; a delivery nobody takes ends as a dead letter."""

import re
from urllib.parse import urlparse

import pytest

from contracts.commands import CreateWorkflow, ProcessWorkflow
from contracts.ids import job_id
from contracts.links import DecisionLink
from runtime.randomness import Randomness
from services.notifier.app import create_app as create_notifier
from services.notifier.catcher import signature_is_valid
from services.notifier.settings import NotifierSettings
from tests.conftest import bearer, eventually
from tests.integration.conftest import api_client, running
from tests.integration.driving import SEED, Driver, first_id
from tests.integration.receivers import smtp_server, until, webhook_receiver

pytestmark = pytest.mark.integration

LINK_SECRET = "test-link-secret"
PUBLIC_URL = "http://ui.test"
VALIDATING = 2  # the expense's policy check runs in its second state
POLICY_FLOOR = 0.05


def passes_policy(workflow_id: str) -> bool:
    return Randomness(SEED).draw("output", job_id(workflow_id, VALIDATING, 1)) >= POLICY_FLOOR


def expense(prefix: str, **input_fields) -> CreateWorkflow:
    workflow_id = first_id(passes_policy, prefix)
    given = {"amount": 120, "manager": "ada", **input_fields}  # ada approves it first
    return CreateWorkflow(workflow_id=workflow_id, workflow_type="expense", input=given)


def notifier_settings(nats_url: str, topology, smtp_port: int = 1, **env) -> NotifierSettings:
    return NotifierSettings.model_validate(
        {
            "NATS_URL": nats_url,
            "WF_PREFIX": topology.prefix,
            "WF_NOTIFIER_PORT": 0,
            "WF_LINK_SECRET": LINK_SECRET,
            "WF_PUBLIC_URL": PUBLIC_URL,
            "WF_SMTP_HOST": "127.0.0.1",
            "WF_SMTP_PORT": smtp_port,
            "WF_NOTIFY_RETRY_FIRST_S": 0.1,
            "WF_NOTIFY_RETRY_MAX_S": 0.5,
            **env,
        }
    )


@pytest.fixture
def system(nats_url, topology, start_service):
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    return {name: start_service(name, nats_url, topology, **settings) for name in ("orchestrator", "processor")}


@pytest.fixture
def driver(js, topology, system) -> Driver:
    return Driver(js, topology)


@pytest.fixture
async def api(nats_url, topology, js, settings_for, system):
    async with api_client(settings_for(nats_url, topology, WF_LINK_SECRET=LINK_SECRET)) as client:
        yield client


def link_of(token: str) -> DecisionLink:
    return DecisionLink.verified(token, LINK_SECRET.encode())


def token_of(link: str) -> str:
    return urlparse(link).fragment.removeprefix("/decide/")


@pytest.mark.index_databases("sqlite")
async def test_a_waiting_expense_sends_a_signed_webhook_and_an_email_whose_link_approves_it_once(
    nats_url, topology, js, api, driver
):
    with smtp_server() as (mailbox, smtp_port):
        async with (
            webhook_receiver() as (receiver, url),
            running(create_notifier(notifier_settings(nats_url, topology, smtp_port))),
        ):
            hook = await api.post("/subscriptions", json={"channel": "webhook", "url": url}, headers=bearer("ada"))
            assert hook.status_code == 201, hook.text
            secret = hook.json()["secret"]
            assert secret.startswith("whsec_") and hook.json()["people"] == ["ada", "role:approver"]
            mail = await api.post(
                "/subscriptions", json={"channel": "email", "email": "ada@example.com"}, headers=bearer("ada")
            )
            assert mail.status_code == 201, mail.text
            listed = (await api.get("/subscriptions", headers=bearer("ada"))).json()
            assert {s["channel"] for s in listed} == {"webhook", "email"} and all("secret" not in s for s in listed)
            assert (await api.get("/subscriptions", headers=bearer("carol"))).json() == []  # not carol's

            create = expense("notified")
            await driver.send(create)
            await driver.send(ProcessWorkflow(workflow_id=create.workflow_id))
            await driver.reaches(create.workflow_id, "Manager Approval")

            [webhook] = await until(lambda: receiver.taken_webhooks)
            assert signature_is_valid(secret, webhook.headers["wf-signature"], webhook.body)
            assert not signature_is_valid("whsec_another", webhook.headers["wf-signature"], webhook.body)
            body = webhook.json
            notification = body["notification"]
            assert (notification["kind"], notification["state"]) == ("waiting", "Manager Approval")
            assert notification["people"] == ["ada", "group:managers"]
            assert webhook.key == body["id"] == f"{notification['id']}.{hook.json()['id']}"
            assert set(body["links"]) == {"approve", "reject"}

            [message] = await until(lambda: mailbox.mails)
            assert message["To"] == "ada@example.com" and "Manager Approval" in message["Subject"]
            text = message.get_content()
            [approve_link] = re.findall(r"Approve: (\S+)", text)
            assert approve_link.startswith(f"{PUBLIC_URL}/#/decide/")

            # The e-mail's approve link: shown, then applied as ada, once.
            token = token_of(approve_link)
            preview = await api.get(f"/decisions/{token}", headers={})
            assert preview.status_code == 200, preview.text
            assert (preview.json()["decision"], preview.json()["person"]) == ("approve", "ada")
            decided = await api.post(f"/decisions/{token}", headers={})
            assert decided.status_code == 200, decided.text
            assert (
                decided.json()["workflow"]["business_state"] == "Director Approval"
                or decided.json()["workflow"]["business_state"] == "Finance Approval"
            )
            approved = [
                e for e in await driver.events(create.workflow_id) if getattr(e, "trigger", "") == "manager_approve"
            ]
            assert [e.actor for e in approved] == ["ada"]

            again = await api.post(f"/decisions/{token}", headers={})
            assert (again.status_code, again.json()["code"]) == (409, "link_used")
            reject = token_of(body["links"]["reject"])
            moved_on = await api.post(f"/decisions/{reject}", headers={})
            assert (moved_on.status_code, moved_on.json()["code"]) == (409, "moved_on")
            secret_key = LINK_SECRET.encode()
            stranger = DecisionLink.new(
                create.workflow_id, link_of(token).entered_sequence, "mallory", "reject", link_of(token).expires_at
            )
            refused = await api.get(f"/decisions/{stranger.sign(secret_key)}", headers={})
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")  # holds no token that may
            forged = token.rsplit(".", 1)[0] + ".AAAA"
            assert (await api.get(f"/decisions/{forged}", headers={})).json()["code"] == "bad_link"
            link = DecisionLink.verified(token, LINK_SECRET.encode())
            expired = link.model_copy(update={"expires_at": link.expires_at.replace(year=2020), "nonce": "n2"})
            gone = await api.get(f"/decisions/{expired.sign(LINK_SECRET.encode())}", headers={})
            assert (gone.status_code, gone.json()["code"]) == (410, "link_expired")

            deleted = await api.delete(f"/subscriptions/{hook.json()['id']}", headers=bearer("carol"))
            assert deleted.status_code == 404  # not carol's to delete
            assert (await api.delete(f"/subscriptions/{hook.json()['id']}", headers=bearer("ada"))).status_code == 204


@pytest.mark.index_databases("sqlite")
async def test_the_manager_is_reminded_before_the_deadline_then_the_escalation_is_announced_across_a_restart(
    nats_url, topology, js, api, driver, system
):
    async with webhook_receiver() as (receiver, url), running(create_notifier(notifier_settings(nats_url, topology))):
        approvers = {"channel": "webhook", "url": url, "people": ["group:managers", "director"]}
        assert (await api.post("/subscriptions", json=approvers)).status_code == 201
        create = expense("reminded", manager_deadline_s=4, manager_remind_before_s=2)
        await driver.send(create)
        await driver.send(ProcessWorkflow(workflow_id=create.workflow_id))
        await driver.reaches(create.workflow_id, "Manager Approval")
        system["orchestrator"].stop()  # the reminder and the deadline are the broker's: they come all the same
        system["orchestrator"].start()
        await driver.reaches(create.workflow_id, "Director Approval", timeout_s=30)

        def escalated() -> list[str] | None:
            kinds = receiver.kinds(create.workflow_id)
            return kinds if "escalated" in kinds else None

        kinds = await until(escalated)
        assert kinds == ["waiting", "reminder", "escalated"]
        at = {w.json["notification"]["kind"]: w.json["notification"]["occurred_at"] for w in receiver.taken_webhooks}
        assert at["waiting"] < at["reminder"] < at["escalated"]
        last = receiver.taken_webhooks[-1].json["notification"]
        assert (last["state"], last["people"]) == ("Director Approval", ["director"])


@pytest.mark.index_databases("sqlite")
async def test_a_receiver_that_was_down_gets_every_notification_once_in_order(nats_url, topology, js, api, driver):
    async with webhook_receiver() as (receiver, url), running(create_notifier(notifier_settings(nats_url, topology))):
        everyone = {"channel": "webhook", "url": url, "people": []}
        assert (await api.post("/subscriptions", json=everyone)).status_code == 201
        receiver.down = True
        workflows = [expense(f"down{n}") for n in range(3)]
        for create in workflows:
            await driver.send(create)
            await driver.send(ProcessWorkflow(workflow_id=create.workflow_id))
        for create in workflows:
            await driver.reaches(create.workflow_id, "Manager Approval")
            await api.post(f"/workflows/{create.workflow_id}/cancel", json={"reason": "not needed"})
        await until(lambda: receiver.calls >= 5)  # tried, and refused, a few times
        assert receiver.taken_webhooks == []

        receiver.down = False
        await until(lambda: len(receiver.taken_webhooks) == 3 * len(workflows))
        for create in workflows:  # in order per workflow: its draft, its manager's wait, its end
            assert receiver.kinds(create.workflow_id) == ["waiting", "waiting", "ended"]
            states = [w.json["notification"]["state"] for w in receiver.taken_webhooks if create.workflow_id in w.key]
            assert states == ["Draft", "Manager Approval", ""]
        assert receiver.repeats == 0


@pytest.mark.index_databases("sqlite")
async def test_a_notifier_killed_mid_flow_sends_nothing_twice_under_another_key(
    nats_url, topology, js, api, driver, start_service
):
    async with webhook_receiver() as (receiver, url):
        approvers = {"channel": "webhook", "url": url, "people": ["group:managers"]}
        assert (await api.post("/subscriptions", json=approvers)).status_code == 201
        env = {"WF_LINK_SECRET": LINK_SECRET, "WF_NOTIFY_RETRY_FIRST_S": "0.1", "WF_NOTIFY_RETRY_MAX_S": "0.5"}
        notifier = start_service("notifier", nats_url, topology, **env)
        workflows = [expense(f"kill{n}") for n in range(6)]
        for index, create in enumerate(workflows):
            await driver.send(create)
            await driver.send(ProcessWorkflow(workflow_id=create.workflow_id))
            if index == 2:
                notifier.stop(kill=True)
                notifier = start_service("notifier", nats_url, topology, **env)
        await until(lambda: len(receiver.taken_webhooks) == len(workflows), timeout_s=60)
        notified = sorted(w.json["notification"]["workflow_id"] for w in receiver.taken_webhooks)
        assert notified == sorted(create.workflow_id for create in workflows)  # each once under its key
        notifier.stop()


@pytest.mark.index_databases("sqlite")
async def test_a_delivery_nobody_takes_is_a_dead_letter_with_its_last_error(nats_url, topology, js, api, driver):
    settings = notifier_settings(nats_url, topology, WF_NOTIFY_RETRY_FOR_S=1.5)
    async with webhook_receiver() as (receiver, url), running(app := create_notifier(settings)):
        approvers = {"channel": "webhook", "url": url, "people": ["group:managers"]}
        assert (await api.post("/subscriptions", json=approvers)).status_code == 201
        receiver.down = True
        create = expense("dead")
        await driver.send(create)
        await driver.send(ProcessWorkflow(workflow_id=create.workflow_id))

        dead = await js.pull_subscribe(topology.dead_subject("deliveries"), stream=topology.dead_stream)
        [letter] = await dead.fetch(1, timeout=20)
        assert "503" in letter.headers["Wf-Error"] and create.workflow_id.encode() in letter.data
        metrics = app.state.service.metrics

        async def counted() -> bool:  # after its publish and its ack: the letter can be read a moment before
            return metrics.dead_letters.labels(channel="webhook")._value.get() >= 1

        await eventually(counted, timeout_s=5)
        assert metrics.dead_letters.labels(channel="webhook")._value.get() == 1
        assert metrics.retries.labels(channel="webhook")._value.get() >= 2


@pytest.mark.index_databases("sqlite")
async def test_bad_subscriptions_are_refused_with_the_reason(nats_url, topology, js, settings_for):
    async with api_client(settings_for(nats_url, topology)) as api:
        no_url = await api.post("/subscriptions", json={"channel": "webhook"})
        assert no_url.status_code == 422 and "url" in no_url.json()["detail"]
        no_address = await api.post("/subscriptions", json={"channel": "email"}, headers=bearer("carol"))  # none
        assert (no_address.status_code, no_address.json()["code"]) == (422, "invalid")
        unknown_kind = await api.post("/subscriptions", json={"channel": "webhook", "url": "http://x", "kinds": ["x"]})
        assert unknown_kind.status_code == 422
        assert (await api.delete("/subscriptions/" + "0" * 32)).status_code == 404
        profile = await api.post("/subscriptions", json={"channel": "email"})  # to admin's profile address
        assert (profile.status_code, profile.json()["email"]) == (201, "admin@example.test")
