"""Making the streams and buckets contracts/topology.py declares, and waiting for them: what a service does with
the layout at start, on one server or a cluster still electing its leaders."""

import asyncio
import logging
import time
from collections.abc import Iterable
from functools import partial

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from contracts.topology import KV_STREAM_PREFIX, Topology

log = logging.getLogger(__name__)

STREAM_EXISTS_WITH_OTHER_CONFIG = 10058
# What a cluster answers, for a moment, while a stream or consumer elects a leader: ask again.
UNAVAILABLE = (
    NatsTimeoutError,
    asyncio.TimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
)
UNAVAILABLE_RETRY_S = 0.2
PROBE_TOKEN = "_probe"
PROBE_RETRY_S = 0.05
EXPECTED_STREAM_MISMATCH = 10060
CREATED_RETRY_S = 0.5


async def ensure_topology(js: JetStreamContext, topology: Topology, writes: Iterable[str] | None = None) -> None:
    """Create every stream and bucket, or bring an existing one to this config. Idempotent. The orchestrator
    calls it at start (and tools do): the other services' NATS users may not create streams, they call
    `wait_until_created`. It returns once the streams behind the subjects it `writes` (by default one of each
    stream and bucket) answer publishes from this connection."""
    for config in topology.stream_configs():
        await patiently(partial(_create_or_update, js, config))
    for config in topology.bucket_configs():
        await patiently(partial(_create_or_update_bucket, js, config))
    exports = ObjectStoreConfig(bucket=topology.exports_bucket, storage=StorageType.FILE, replicas=topology.replicas)
    await patiently(partial(_create_object_store, js, exports))
    if writes is None:
        # (Each config has subjects; nats-py types them optional.)
        writes = [config.subjects[0] for config in topology.stream_configs() if config.subjects]
        writes += [topology.kv_subjects(config.bucket) for config in topology.bucket_configs()]
    await _until_each_answers(js, writes)


async def wait_until_created(js: JetStreamContext, streams: Iterable[str], writes: Iterable[str]) -> None:
    """For a service that uses streams but does not create them: wait until the orchestrator has created each of
    `streams` (a bucket's too: `kv_stream`), then until those behind the subjects it `writes` answer it."""
    for stream in streams:
        await _until_created(js, stream)
    await _until_each_answers(js, writes)


async def _create_object_store(js: JetStreamContext, config: ObjectStoreConfig) -> None:
    assert config.bucket is not None  # ensure_topology names it; nats-py types it optional
    try:
        await js.create_object_store(config.bucket, config)
    except BadRequestError as error:
        if error.err_code != STREAM_EXISTS_WITH_OTHER_CONFIG:
            raise


async def _create_or_update(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as error:
        if error.err_code != STREAM_EXISTS_WITH_OTHER_CONFIG:
            raise
        await js.update_stream(config)


async def _create_or_update_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.create_key_value(config)
    except BadRequestError as error:
        if error.err_code != STREAM_EXISTS_WITH_OTHER_CONFIG:
            raise
        # Created with other replicas: bring the bucket's stream to ours, keeping the rest of its config.
        existing = (await js.stream_info(KV_STREAM_PREFIX + config.bucket)).config
        await js.update_stream(existing.evolve(num_replicas=config.replicas))


async def patiently(request, timeout_s: float = 30.0):
    """Ask again while the cluster answers "unavailable" or not at all: on a cluster just formed, with every service
    creating the same streams at once, a creation was seen to go unanswered for more than the client's 5 s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await request()
        except UNAVAILABLE:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(UNAVAILABLE_RETRY_S)


async def _until_created(js: JetStreamContext, stream: str) -> None:
    """Wait for ever: the orchestrator may start long after."""
    told = False
    while True:
        try:
            await patiently(partial(js.stream_info, stream))
            return
        except NotFoundError:
            if not told:
                log.info("waiting for the stream %s: the orchestrator creates it", stream)
                told = True
            await asyncio.sleep(CREATED_RETRY_S)


async def _until_each_answers(js: JetStreamContext, subjects: Iterable[str]) -> None:
    for subject in subjects:
        await _until_answering(js, subject.replace("*", PROBE_TOKEN).replace(">", PROBE_TOKEN))


async def _until_answering(js: JetStreamContext, subject: str, timeout_s: float = 30.0) -> None:
    """Wait until the stream that stores `subject` answers a publish on this connection. On a cluster a stream just
    created (or whose leader just changed) answers "no responders" until its leader's interest reaches the server the
    client is on. The probe expects another stream, so the leader refuses it and stores nothing."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await js.publish(subject, b"", headers={"Nats-Expected-Stream": PROBE_TOKEN}, timeout=2)
        except BadRequestError as error:
            if error.err_code == EXPECTED_STREAM_MISMATCH:
                return
            raise
        except (NoStreamResponseError, NatsTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(PROBE_RETRY_S)
            continue
        raise RuntimeError(f"the probe on {subject} was stored")
