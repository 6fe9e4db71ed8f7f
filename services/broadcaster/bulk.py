"""A bulk action's progress for the WebSocket clients that follow it (`/ws?bulk=<id>`). The API writes each bulk's
record and refusals to the bulk bucket (contracts/bulk.py); every version of the record is a progress report. They
are read here through an ordered consumer on the bucket's stream that starts with their current values, so a client
that (re)connects at any moment is told where the bulk stands, then each change:

- `{"type": "bulk", "id", "action", "filter", "by", "total", "done", "refused", "remaining", "started_at",
  "finished_at", "stopped"}` for each version of the record (`refused` is a count here);
- `{"type": "bulk_refused", "bulk_id", "workflow_id", "code", "reason"}` for each refused workflow, before the version
  of the record that counts it (the same workflow may come twice: a bulk taken over sends its last commands again).

The last message is the record with `finished_at` set."""

import asyncio
import json
from collections.abc import AsyncGenerator

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from contracts.bulk import BulkRecord, BulkRefusal, meta_key, refused_key
from contracts.topology import Topology


class BulkProgress:
    def __init__(self, js: JetStreamContext, topology: Topology, bulk_id: str) -> None:
        self._js, self._bulk_id = js, bulk_id
        self._bucket = topology.bulk_bucket
        self._stream = topology.kv_stream(self._bucket)
        self._meta_subject = f"$KV.{self._bucket}.{meta_key(bulk_id)}"

    async def exists(self) -> bool:
        try:
            await (await self._js.key_value(self._bucket)).get(meta_key(self._bulk_id))
        except KeyNotFoundError:
            return False
        return True

    async def messages(self) -> AsyncGenerator[str, None]:
        """The bulk's progress as it stands, then as it changes, until it has finished."""
        received: asyncio.Queue[Msg] = asyncio.Queue()
        subjects = [self._meta_subject, f"$KV.{self._bucket}.{refused_key(self._bulk_id, '*')}"]
        subscription = await self._js.subscribe(
            self._meta_subject,
            stream=self._stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            config=ConsumerConfig(filter_subjects=subjects),
            cb=received.put,
        )
        try:
            while True:
                message = await received.get()
                if (message.headers or {}).get(KV_OP) in (KV_DEL, KV_PURGE):
                    continue
                if message.subject != self._meta_subject:
                    refusal = BulkRefusal.model_validate_json(message.data)
                    yield json.dumps({"type": "bulk_refused", "bulk_id": self._bulk_id, **refusal.model_dump()})
                    continue
                record = BulkRecord.model_validate_json(message.data)
                yield json.dumps({"type": "bulk", **record.progress()})
                if record.finished_at is not None:
                    return
        finally:
            await subscription.unsubscribe()
