"""Sends what a state owes: a step's job to the processors' work queue, durable timers to the broker's scheduler."""

from nats.js.client import JetStreamContext

from contracts.jobs import ProcessJob
from contracts.state import PendingTimer
from contracts.topology import Topology


class JetStreamOutbox:
    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self.js, self.topology = js, topology

    async def __call__(self, messages: list[ProcessJob | PendingTimer]) -> None:
        # Fixed message ids make every send idempotent: JetStream drops a repeat within its duplicate window, and
        # the orchestrator ignores a repeated job result or timer beyond it.
        for message in messages:
            if isinstance(message, ProcessJob):
                subject = self.topology.jobs_subject(message.workflow_type, message.step)
                await self.js.publish(
                    subject, message.model_dump_json().encode(), headers={"Nats-Msg-Id": message.job_id}
                )
            else:
                await self.schedule(message)

    async def schedule(self, timer: PendingTimer) -> None:
        """A durable timer: the broker keeps it and publishes its command to the workflow at `due_at`."""
        command = timer.command
        due_at = timer.due_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = {
            "Nats-Msg-Id": command.message_id,
            "Nats-Schedule": f"@at {due_at}",
            "Nats-Schedule-Target": self.topology.subject_for(command.kind, command.workflow_id),
        }
        subject = self.topology.timer_subject(command.workflow_id, command.timer_id)
        await self.js.publish(subject, command.model_dump_json().encode(), headers=headers)

    async def cancel(self, timers: list[PendingTimer]) -> None:
        """Remove the schedules of timers no longer owed. One that fires meanwhile changes nothing: the workflow no
        longer owes it."""
        for timer in timers:
            subject = self.topology.timer_subject(timer.command.workflow_id, timer.command.timer_id)
            await self.js.purge_stream(self.topology.commands_stream, subject=subject)
