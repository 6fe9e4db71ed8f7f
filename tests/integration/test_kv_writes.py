"""`create_once` on a real bucket: a key is written once, and a second write is refused without a read-back."""

import pytest
from nats.js.errors import KeyWrongLastSequenceError

from runtime.kv import create_once

pytestmark = pytest.mark.integration


async def test_a_key_is_written_once_and_a_second_write_is_refused(js, topology):
    kv = await js.key_value(topology.subscriptions_bucket)
    revision = await create_once(kv, "first", b"one")
    with pytest.raises(KeyWrongLastSequenceError):
        await create_once(kv, "first", b"two")
    entry = await kv.get("first")
    assert (entry.value, entry.revision) == (b"one", revision)
