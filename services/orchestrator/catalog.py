"""The type catalog: every version of every type, in the types bucket (key `<name>.<version>`), and this replica's
copy of them that its engine reads. Each replica loads the bucket at start and follows it with a KV watch, so a version
published through any replica is run by all of them, without a restart. Publishing is answered here, over NATS
request/reply (`types_apply_subject`), since this is where a definition is checked and compiled."""

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from contracts.definitions import (
    ApplyType,
    PublishedType,
    TypeApplied,
    TypeDefinition,
    parse_version_key,
    version_key,
)
from contracts.topology import Topology
from runtime.eventlog import current_entries
from runtime.kv import create_once
from services.orchestrator.domain.declaration import (
    InvalidDefinition,
    TypeVersions,
    WorkflowType,
    changes_between,
    parse_definition,
)
from services.orchestrator.domain.types import SHIPPED_DEFINITIONS

log = logging.getLogger("orchestrator.catalog")

SHIPPED_BY = "shipped"  # who published the shipped types' first versions
PUBLISH_ATTEMPTS = 5  # versions taken by other replicas at the same moment before giving up


class TypeCatalog:
    def __init__(self, nc: Client, js: JetStreamContext, topology: Topology, versions: TypeVersions) -> None:
        self.nc, self.js, self.topology, self.versions = nc, js, topology, versions
        self.kv: KeyValue | None = None

    async def open(self, shipped: Iterable[TypeDefinition]) -> None:
        """Load every published version; a shipped type with none yet is published as its version 1."""
        self.kv = await self.js.key_value(self.topology.types_bucket)
        entries = await current_entries(self.js, self.topology, self.topology.types_bucket)
        for key in entries:
            if parse_version_key(key) is None:  # a description stored before types had versions: superseded
                await self.kv.delete(key)
        named = {parsed[0] for parsed in map(parse_version_key, entries) if parsed}
        for definition in shipped:
            if definition.name not in named:
                try:
                    await self._publish(definition, SHIPPED_BY, version=1, changes=[])
                except KeyWrongLastSequenceError:  # another replica, starting too, published it first
                    pass
        await self.refresh()

    async def refresh(self) -> None:
        """Load every version the bucket holds now (the watch brings them too, a moment later)."""
        for published in (await stored_versions(self.js, self.topology)).values():
            self._add(published)

    async def follow(self) -> None:
        """Add each version as it is published (by any replica), for as long as the service runs."""
        assert self.kv, "open() comes first"
        watcher = await self.kv.watchall(ignore_deletes=True)
        try:
            while True:
                entry = await watcher.updates(timeout=None)  # type: ignore[arg-type]  # None: wait for the next one
                if not isinstance(entry, KeyValue.Entry) or not entry.value or parse_version_key(entry.key) is None:
                    continue
                self._add(PublishedType.model_validate_json(entry.value))
        finally:
            await watcher.stop()

    async def serve(self) -> None:
        """Answer requests to publish a version (any replica may: the bucket's create decides the version)."""
        await self.nc.subscribe(self.topology.types_apply_subject(), queue="orchestrator", cb=self._answer)

    async def _answer(self, message: Msg) -> None:
        try:
            request = ApplyType.model_validate_json(message.data)
            applied = await self.apply(request.definition, request.published_by)
        except ValidationError as error:
            applied = TypeApplied(outcome="refused", problems=[f"request: {error.errors()[0]['msg']}"])
        await message.respond(applied.model_dump_json().encode())

    async def apply(self, raw: object, published_by: str) -> TypeApplied:
        """Publish a definition as its type's next version: refused listing every problem, or unchanged when it is
        the latest version's own."""
        definition, problems = parse_definition(raw)
        if definition is None or problems:
            return TypeApplied(outcome="refused", problems=problems)
        for _ in range(PUBLISH_ATTEMPTS):
            stored = await stored_versions(self.js, self.topology)
            mine = {v: published for (name, v), published in stored.items() if name == definition.name}
            latest = mine[max(mine)] if mine else None
            if latest is not None and latest.definition == definition:
                return TypeApplied(outcome="unchanged", version=latest.version)
            version = latest.version + 1 if latest else 1
            changes = changes_between(latest.definition, definition) if latest else []
            try:
                published = await self._publish(definition, published_by, version, changes)
            except KeyWrongLastSequenceError:  # another replica published this version first: take the next
                continue
            self._add(published)
            return TypeApplied(outcome="published", version=version, changes=changes)
        raise RuntimeError(f"could not publish a version of '{definition.name}': every attempt was taken")

    async def _publish(
        self, definition: TypeDefinition, published_by: str, version: int, changes: list[str]
    ) -> PublishedType:
        assert self.kv
        declared = WorkflowType.compile(definition, version)
        published = PublishedType(
            version=version,
            definition=definition,
            info=declared.describe(),
            published_at=datetime.now(UTC),
            published_by=published_by,
            changes=changes,
        )
        await create_once(self.kv, version_key(definition.name, version), published.model_dump_json().encode())
        log.info("published version %d of type %s (%s)", version, definition.name, "; ".join(changes) or "new")
        return published

    def _add(self, published: PublishedType) -> None:
        if self.versions.has(published.definition.name, published.version):
            return
        try:
            self.versions.add(WorkflowType.compile(published.definition, published.version))
        except InvalidDefinition as error:  # never written so, as apply checks first: kept out, and said
            log.error("version %d of type %s cannot run: %s", published.version, published.definition.name, error)


async def stored_versions(js: JetStreamContext, topology: Topology) -> dict[tuple[str, int], PublishedType]:
    """Every version the types bucket holds, by (name, version)."""
    entries = await current_entries(js, topology, topology.types_bucket)
    return {
        parsed: PublishedType.model_validate_json(value)
        for key, value in entries.items()
        if (parsed := parse_version_key(key)) is not None
    }


async def published_versions(js: JetStreamContext, topology: Topology) -> TypeVersions:
    """Every version the bucket holds, compiled, and the shipped types' first versions where it holds none of them:
    what maintenance folds logs with."""
    versions = TypeVersions(WorkflowType.compile(definition) for definition in SHIPPED_DEFINITIONS.values())
    for published in (await stored_versions(js, topology)).values():
        versions.add(WorkflowType.compile(published.definition, published.version))
    return versions


async def run_forever(work, name: str) -> None:
    """Keep a catalog task going through a lost connection: it is begun again after a pause."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped; beginning again in 1 s", name)
            await asyncio.sleep(1)
