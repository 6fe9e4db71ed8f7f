"""Writing a key of a JetStream key-value bucket once."""

from nats.js.kv import KeyValue


async def create_once(kv: KeyValue, key: str, value: bytes) -> int:
    """Write `key` only if it never held a value: its revision, or `KeyWrongLastSequenceError` when it did. Not
    `KeyValue.create`: on a taken key it reads the key back, and in a cluster that read may reach a replica not yet
    caught up, which answers "not found" (two orchestrators starting together saw it)."""
    return await kv.update(key, value, last=0)
