"""A service told of one node of a cluster (NATS_URL) learns the others from it, and fails over to them when that
node is lost, as its NATS user: its credentials go to every server, not only to those NATS_URL names. (With the
password in the URLs only, a learnt node refused it, and FastStream's broker gave up reconnecting for good: CI saw
the orchestrator cut off for minutes when a cluster node was killed.)"""

import nats
import pytest
from faststream.nats import NatsBroker

from runtime.settings import ServiceSettings
from services.launcher.nats_server import NatsCluster
from services.launcher.nats_users import NatsUsers
from tests.conftest import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def secured_cluster(tmp_path):
    cluster = NatsCluster(tmp_path / "cluster", users=NatsUsers.generate(), log_dir=tmp_path).start()
    yield cluster
    cluster.stop()


async def connected_elsewhere(client, lost_port: int) -> bool:
    server = client.connected_url
    return client.is_connected and server is not None and server.port != lost_port


@pytest.mark.parametrize("client", ["faststream broker", "nats-py"])
async def test_a_service_fails_over_to_a_node_it_only_learnt_of(secured_cluster, client):
    first = secured_cluster.nodes[0]
    assert secured_cluster.users
    credentials = secured_cluster.users.service_environment("orchestrator")
    settings = ServiceSettings(NATS_URL=first.url, **credentials)  # type: ignore[arg-type]  (by alias)
    if client == "nats-py":
        connection = await nats.connect(**settings.nats_connection("orchestrator"), max_reconnect_attempts=-1)
    else:
        broker = NatsBroker(**settings.broker_connection("orchestrator"))
        connection = await broker.connect()
    try:
        await eventually(lambda: len(connection.servers) == 3)  # the other two, as the first node tells of them
        first.stop(kill=True)
        await eventually(lambda: connected_elsewhere(connection, first.port), timeout_s=30)
    finally:
        await connection.close()
