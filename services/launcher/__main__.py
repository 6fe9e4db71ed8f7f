"""`python -m services.launcher` (what `make run` runs): the whole system on one machine.

Without NATS_URL it starts a nats-server of its own (JetStream, data under WF_DATA_DIR), or with `--cluster` three of
them as a cluster, with the users of deploy/nats/auth.conf (passwords in WF_DATA_DIR/secrets/nats.env, generated at
the first run), then every service as a child process, each as its own NATS user (`--replicas N`: N orchestrators
and N processors). The payments worker pays through WF_PAYMENTS_URL, else through a sandbox the launcher starts. It
waits until the HTTP services answer /healthz and prints where to go. Ctrl-C or SIGTERM stops the services (SIGTERM,
a kill after a grace period), then nats-server. A service that exits on its own stops everything, and the launcher
exits non-zero."""

import argparse
import asyncio
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import IO

from contracts.topology import Topology
from services.launcher.api_tokens import api_tokens
from services.launcher.local_subscriptions import CATCHER_WEBHOOK, DEV_EMAIL, ensure_local_subscriptions
from services.launcher.nats_server import DURABLE, NatsCluster, NatsServer, free_port, free_ports
from services.launcher.nats_users import NatsUsers, secrets_file
from services.launcher.settings import LauncherSettings  # after the handler

SERVICES = ("api", "orchestrator", "processor", "broadcaster", "indexer", "notifier", "payments")
# The payments worker takes the expense's pay step, the processor simulates the rest (as WF_PROCESSOR_STEPS may say).
PROCESSOR_STEPS = "approval.process,expense.validate"
SANDBOX = "payments-sandbox"  # a stand-in payment provider, when WF_PAYMENTS_URL names none
REPLICATED = {"orchestrator": "WF_ORCHESTRATOR_PORT", "processor": "WF_PROCESSOR_PORT"}  # their metrics port
CLUSTER_SIZE = 3
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2

_output_lock = threading.Lock()
_name_width = 12  # widened to the longest replica's name (orchestrator-2)


class LaunchFailed(Exception):
    """The system cannot run: say why, stop what started, exit non-zero."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    output_relay: threading.Thread


def say(source: str, line: str) -> None:
    with _output_lock:
        sys.stdout.write(f"{source:<{_name_width}} | {line.rstrip()}\n")
        sys.stdout.flush()


def relay_output(name: str, stream: IO[bytes]) -> None:
    for line in stream:
        say(name, line.decode(errors="replace"))


@dataclass(frozen=True)
class Planned:
    name: str  # what its output lines are prefixed with: the service, or the service and its replica number
    service: str  # the module: python -m services.<service>
    env: dict[str, str]


def plan_services(settings: LauncherSettings, replicas: int) -> list[Planned]:
    """Every service once, the orchestrator and the processor `replicas` times. The first replica's metrics port is
    the configured one; the others get free ports (0 stays 0: each picks its own)."""
    ports = {"orchestrator": settings.orchestrator_port, "processor": settings.processor_port}
    planned = []
    for service in SERVICES:
        if service not in REPLICATED:
            planned.append(Planned(service, service, {}))
            continue
        for replica in range(1, replicas + 1):
            port = ports[service] if replica == 1 or ports[service] == 0 else free_port()
            name = f"{service}-{replica}" if replicas > 1 else service
            planned.append(Planned(name, service, {REPLICATED[service]: str(port)}))
    return planned


def start_service(name: str, env: dict[str, str], service: str | None = None) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{service or name}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # A session of its own, so a terminal's Ctrl-C reaches only the launcher, which stops the services in order.
        start_new_session=True,
    )
    relay = threading.Thread(target=relay_output, args=(name, process.stdout), daemon=True)
    relay.start()
    say("launcher", f"started {name} (pid {process.pid})")
    return Child(name, process, relay)


def start_nats(nats: NatsServer | NatsCluster) -> str:
    servers = nats.nodes if isinstance(nats, NatsCluster) else [nats]
    try:
        nats.start()
    except (RuntimeError, TimeoutError) as error:
        logs = ", ".join(str(server.log_file) for server in servers)
        raise LaunchFailed(f"nats-server did not start ({error}); see {logs}") from error
    for server in servers:
        name = f"nats-server {server.name}" if server.cluster else "nats-server"
        say("launcher", f"started {name} (pid {server.pid}) at {server.url}, data in {server.store_dir}")
    return nats.url


def own_nats(settings: LauncherSettings, cluster: bool) -> NatsServer | NatsCluster | None:
    """The NATS the launcher runs itself: none when NATS_URL names one, else a server, or a cluster of three."""
    if settings.nats_url:
        if cluster:
            raise LaunchFailed("--cluster starts a cluster of its own: unset NATS_URL, or drop --cluster")
        return None
    users = NatsUsers.load_or_create(secrets_file(settings.data_dir))
    sync_interval = settings.unsafe_nats_sync_interval or DURABLE
    if sync_interval != DURABLE:
        say(
            "launcher",
            f"WF_UNSAFE_NATS_SYNC_INTERVAL={sync_interval}: nats-server syncs its disk every "
            f"{sync_interval}, and a power cut loses what it acknowledged since",
        )
    try:
        if cluster:
            root = settings.data_dir / "cluster"
            ports = {"client_port": 4222, "cluster_port": 6222, "monitor_port": 8222}
            return NatsCluster(root, CLUSTER_SIZE, **ports, log_dir=root, users=users, sync_interval=sync_interval)
        data = settings.data_dir
        # Not a port a service is told to take: those are not bound yet, so a free port may be one of them.
        services = {settings.api_port, settings.broadcaster_port, settings.indexer_port, settings.notifier_port}
        services |= {settings.orchestrator_port, settings.processor_port, settings.payments_port}
        services |= {settings.payments_sandbox_port}
        [port] = free_ports(1, 4222, taken=services)
        [monitor_port] = free_ports(1, 8222, taken=services | {port})
        return NatsServer(
            data / "nats", port, data / "nats.log", users=users, monitor_port=monitor_port, sync_interval=sync_interval
        )
    except ValueError as error:
        raise LaunchFailed(f"WF_UNSAFE_NATS_SYNC_INTERVAL: {error}") from error


def nats_ports(nats: NatsServer | NatsCluster | None) -> set[int]:
    """The ports the launcher's own NATS listens on (none for someone else's)."""
    if nats is None:
        return set()
    servers = nats.nodes if isinstance(nats, NatsCluster) else [nats]
    return {port for server in servers for port in (server.port, server.monitor_port)}


def nats_credentials(nats: NatsServer | NatsCluster | None, service: str) -> dict[str, str]:
    """On the launcher's own NATS, each service connects as the user of its name (deploy/nats/auth.conf); the payments
    worker as a team's worker does, as `worker`."""
    user = "worker" if service == "payments" else service
    return nats.users.service_environment(user) if nats and nats.users else {}


def stream_replicas(settings: LauncherSettings, nats: NatsServer | NatsCluster | None) -> dict[str, str]:
    """WF_REPLICAS for the services: as set for a NATS of someone else's; on the launcher's own, what it can hold."""
    if nats is None:
        return {}
    most = CLUSTER_SIZE if isinstance(nats, NatsCluster) else 1
    replicas = settings.stream_replicas or most
    if replicas > most:
        where = f"a cluster of {CLUSTER_SIZE}" if most > 1 else "one server (add --cluster for 3)"
        raise LaunchFailed(f"WF_REPLICAS={replicas} is more than {where} can hold")
    return {"WF_REPLICAS": str(replicas)}


def ensure_ports_free(settings: LauncherSettings) -> None:
    """Something else answering /healthz on our port would pass for our service. A connection probe, not a bind:
    a bind also fails on the TIME_WAIT sockets a previous run leaves behind, which the services' servers allow."""
    for variable, port in (("WF_API_PORT", settings.api_port), ("WF_BROADCASTER_PORT", settings.broadcaster_port)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            continue
        raise LaunchFailed(f"port {port} is in use: stop what listens there, or set {variable}")


def answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # (4xx and 5xx raise)
            return 200 <= response.status < 300  # a worker's /healthz answers 204
    except (OSError, http.client.HTTPException):
        return False


def fail_if_any_exited(children: list[Child]) -> None:
    for child in children:
        if (code := child.process.poll()) is not None:
            raise LaunchFailed(f"{child.name} exited unexpectedly with code {code}; stopping the rest")


def wait_until_ready(health_urls: dict[str, str], children: list[Child], stop_requested: threading.Event) -> bool:
    """True once every URL answers 200; False when a stop is requested first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = dict(health_urls)
    while waiting:
        if stop_requested.wait(POLL_INTERVAL_S):
            return False
        fail_if_any_exited(children)
        waiting = {name: url for name, url in waiting.items() if not answers_ok(url)}
        if waiting and time.monotonic() > deadline:
            not_ready = ", ".join(f"{name} ({url})" for name, url in waiting.items())
            raise LaunchFailed(f"not ready after {READY_TIMEOUT_S:.0f} s: {not_ready}")
    return True


def supervise(children: list[Child], stop_requested: threading.Event) -> None:
    while not stop_requested.wait(POLL_INTERVAL_S):
        fail_if_any_exited(children)


def stop_services(children: list[Child]) -> bool:
    """SIGTERM to every running service, then a kill for any still running after the grace period. True when every
    service stopped by itself with exit code 0."""
    running = [child for child in children if child.process.poll() is None]
    if running:
        say("launcher", f"stopping {', '.join(child.name for child in running)}")
    for child in running:
        child.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    clean = True
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("launcher", f"{child.name} did not stop within {STOP_GRACE_S:.0f} s: killing it")
            child.process.kill()
            child.process.wait()
        child.output_relay.join(timeout=1)  # its last lines before ours
        clean = clean and child.process.returncode == 0
        say("launcher", f"stopped {child.name} (exit code {child.process.returncode})")
    return clean


def link_secret(nats: NatsServer | NatsCluster | None) -> str:
    """The key of one-click decision links: WF_LINK_SECRET, else the one kept beside the NATS passwords (so a link
    outlives a restart), else one for this run."""
    if secret := os.environ.get("WF_LINK_SECRET"):
        return secret
    if nats and nats.users:
        return nats.users.compose_passwords["WF_LINK_SECRET"]
    return secrets.token_urlsafe(32)


def nats_for_clients(settings: LauncherSettings, nats: NatsServer | NatsCluster | None, nats_url: str) -> str:
    """Where outside clients connect: to the launcher's own NATS as the user `client`, who may publish commands."""
    if nats is None or nats.users is None:
        return nats_url
    every_user = secrets_file(settings.data_dir)
    return f"{nats.users.url('client', nats_url)}   (commands only; every user's password: {every_user})"


def print_where_to_go(settings: LauncherSettings, nats_url: str, planned: list[Planned], index_url: str) -> None:
    api = f"http://127.0.0.1:{settings.api_port}"
    create = '-H "Authorization: Bearer $WF_TOKEN" -H \'content-type: application/json\' -d \'{"type": "approval"}\''
    metrics = [
        f"  metrics    {each.name} http://127.0.0.1:{port}/metrics"
        for each in planned
        if each.service in REPLICATED and (port := each.env[REPLICATED[each.service]]) != "0"
    ]
    for line in (
        "ready",
        f"  UI         {api}/",
        f"  API        {api}/workflows   (OpenAPI: {api}/schema)",
        f"  WebSocket  ws://127.0.0.1:{settings.broadcaster_port}/ws",
        f"  NATS       {nats_url}",
        f"  index      {index_url}",
        *metrics,
        f"  try        curl -X POST {api}/workflows {create}",
        "Ctrl-C stops everything.",
    ):
        say("launcher", line)


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.launcher", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"run a {CLUSTER_SIZE}-node JetStream cluster on loopback ports (data in "
        f"WF_DATA_DIR/cluster) instead of one server; streams get {CLUSTER_SIZE} replicas",
    )
    parser.add_argument(
        "--replicas",
        type=positive,
        default=1,
        metavar="N",
        help="run N orchestrators and N processors (the api and the broadcaster run once)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global _name_width
    arguments = parse_arguments(argv)
    settings = LauncherSettings()
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())

    nats: NatsServer | NatsCluster | None = None
    children: list[Child] = []
    exit_code = 0
    try:
        planned = plan_services(settings, arguments.replicas)
        _name_width = max(_name_width, len(SANDBOX), *(len(each.name) for each in planned))
        nats = own_nats(settings, arguments.cluster)
        replicas = stream_replicas(settings, nats)
        ensure_ports_free(settings)
        nats_url = start_nats(nats) if nats else settings.nats_url
        index_url = settings.index_url or f"sqlite+aiosqlite:///{settings.data_dir / 'index.sqlite'}"
        taken = {settings.api_port, settings.broadcaster_port, *nats_ports(nats)}
        [indexer_port] = free_ports(1, settings.indexer_port, taken=taken)
        [notifier_port] = free_ports(1, settings.notifier_port, taken=taken | {indexer_port})
        [payments_port] = free_ports(1, settings.payments_port, taken=taken | {indexer_port, notifier_port})
        env = (
            {"WF_BIND_HOST": "127.0.0.1", "WF_PROCESSOR_STEPS": PROCESSOR_STEPS}
            | os.environ
            | replicas
            | {  # local runs stay on this machine by default
                "NATS_URL": nats_url,
                "WF_API_PORT": str(settings.api_port),
                "WF_BROADCASTER_PORT": str(settings.broadcaster_port),
                "WF_INDEXER_PORT": str(indexer_port),
                "WF_NOTIFIER_PORT": str(notifier_port),
                "WF_PAYMENTS_PORT": str(payments_port),
                "WF_PUBLIC_URL": os.environ.get("WF_PUBLIC_URL", f"http://127.0.0.1:{settings.api_port}"),
                "WF_LINK_SECRET": link_secret(nats),
                "WF_INDEX_URL": index_url,
                "PYTHONUNBUFFERED": "1",  # their lines reach the terminal as they are written, not when a buffer fills
            }
        )
        tokens = api_tokens(settings.api_tokens_file, settings.auth, settings.data_dir)
        env |= tokens.environment
        for line in tokens.where_to_sign_in(f"http://127.0.0.1:{settings.api_port}"):
            say("launcher", line)
        if not settings.payments_url:
            sandbox_taken = taken | {indexer_port, notifier_port, payments_port}
            [sandbox_port] = free_ports(1, settings.payments_sandbox_port, taken=sandbox_taken)
            env |= {
                "WF_PAYMENTS_URL": f"http://127.0.0.1:{sandbox_port}",
                "WF_PAYMENTS_SANDBOX_PORT": str(sandbox_port),
            }
            children.append(start_service(SANDBOX, env, "payments.sandbox"))
        children += [
            start_service(each.name, env | each.env | nats_credentials(nats, each.service), each.service)
            for each in planned
        ]
        health_urls = {
            "api": f"http://127.0.0.1:{settings.api_port}/healthz",
            "broadcaster": f"http://127.0.0.1:{settings.broadcaster_port}/healthz",
            "indexer": f"http://127.0.0.1:{indexer_port}/healthz",  # once it has caught up with the read model
            "notifier": f"http://127.0.0.1:{notifier_port}/healthz",
            "payments": f"http://127.0.0.1:{payments_port}/healthz",
        }
        if wait_until_ready(health_urls, children, stop_requested):
            print_where_to_go(settings, nats_for_clients(settings, nats, nats_url), planned, index_url)
            if nats and nats.users:
                workers = nats.users.url("worker", nats_url)
                say("launcher", f"  workers    {workers}   (your own steps: README, Write your own step)")
                admin = nats.users.url("admin", nats_url)
                secret = asyncio.run(ensure_local_subscriptions(admin, Topology(prefix=env.get("WF_PREFIX", "wf"))))
                say(
                    "launcher",
                    f"  notices    e-mail to {DEV_EMAIL} and webhooks to {CATCHER_WEBHOOK} (secret {secret})",
                )
                say("launcher", "             see them: .venv/bin/python -m services.notifier.catcher")
            if not settings.payments_url:
                say("launcher", f"  payments   {env['WF_PAYMENTS_URL']}   (a sandbox: nothing is paid for real; "
                                "WF_PAYMENTS_URL names a provider)")  # fmt: skip
            supervise(children, stop_requested)
    except LaunchFailed as failure:
        say("launcher", str(failure))
        exit_code = 1
    finally:
        if not stop_services(children):
            exit_code = 1
        if nats and nats.is_running:
            nats.stop()
            say(
                "launcher",
                f"stopped nats-server ({CLUSTER_SIZE} nodes)"
                if isinstance(nats, NatsCluster)
                else "stopped nats-server",
            )
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
