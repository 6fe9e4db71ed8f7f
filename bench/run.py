"""`python -m bench.run [--quick] [--out bench/results]`: measure the system on this machine.

One nats-server of its own (temp store), durable as shipped (every write synced to disk before its ack), and the real
services as child processes; every scenario on a prefix of its own. The broker's limit is measured a second time on a
server that syncs every 2 minutes (nats-server's own default), to show what durability costs. Prints progress, then a table of every figure; writes results.json and results.html (inline SVG) under --out.
Every process it starts is stopped on the way out, Ctrl-C included."""

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bench import broker, cycles, latency, memory, query, state_load
from bench.report import Results, format_table, rows, write_html, write_json
from bench.system import System, catching, connected, say
from services.launcher.nats_server import DURABLE, nats_server_binary

TMPFS = Path("/dev/shm")
NATS_DEFAULT_SYNC_INTERVAL = "120s"  # nats-server's own default: not durable against a power cut


@dataclass(frozen=True)
class Plan:
    """How long and how large each measurement is."""

    broker_s: float
    replicas: tuple[int, ...]
    failure_rates: tuple[float, ...]
    warmup_s: float
    measure_s: float
    in_flight: int
    wire_s: float
    latency_rate: float
    latency_window: int
    latency_s: float
    history_lengths: tuple[int, ...]
    waiting_target: int
    waiting_time_box_s: float
    websocket_clients: int
    query_sizes: tuple[int, ...]
    query_requests: int


FULL = Plan(
    broker_s=2.0,
    replicas=(1, 2, 4),
    failure_rates=(0.0, 0.25),
    warmup_s=3.0,
    measure_s=8.0,
    in_flight=200,
    wire_s=2.0,
    latency_rate=200,
    latency_window=64,
    latency_s=5.0,
    history_lengths=(10, 1_000, 100_000),
    waiting_target=100_000,  # the figure
    waiting_time_box_s=600.0,  # enough for the target on a slow day (~240 reach waiting per s)
    websocket_clients=1_000,
    query_sizes=(1_000, 10_000, 100_000, 1_000_000),
    query_requests=200,
)
QUICK = Plan(
    broker_s=1.0,
    replicas=(1, 2),
    failure_rates=(0.0,),
    warmup_s=1.5,
    measure_s=4.0,
    in_flight=200,
    wire_s=0.0,  # not in quick mode
    latency_rate=200,
    latency_window=64,
    latency_s=3.0,
    history_lengths=(10, 1_000, 10_000),
    waiting_target=2_000,
    waiting_time_box_s=15.0,
    websocket_clients=200,
    query_sizes=(1_000, 10_000),
    query_requests=50,
)


def machine() -> dict[str, str]:
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "nats-server": version,
        "platform": platform.platform(),
    }


def store_filesystem(path: Path) -> str:
    """The file system the broker's store is on: a disk's sync costs what the figures show, tmpfs's nothing."""
    found = subprocess.run(["df", "--output=source,fstype", str(path)], capture_output=True, text=True).stdout
    return " ".join(found.split()[2:]) or "unknown"


async def measure(
    system: System, plan: Plan, results: Results, store_on_tmpfs: bool, databases: dict[str, str]
) -> None:
    """Every measurement in turn (`store_on_tmpfs`: the run's broker store is already in memory). Ctrl-C or SIGTERM cancels the run: each measurement stops its processes on the way
    out, and the figures so far are kept."""
    stopping, run = asyncio.Event(), asyncio.current_task()
    assert run is not None  # a coroutine runs in a task

    def stop() -> None:
        stopping.set()
        run.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop)

    async def section(name: str, work) -> None:
        """Run one measurement; a failure is reported and the others still run."""
        started = time.perf_counter()
        say(f"── {name}")
        try:
            await work()
        except Exception as error:  # — one broken measurement should not lose the others
            if stopping.is_set():  # nats-py turns a cancelled request into a timeout: it is the interruption
                raise asyncio.CancelledError from error
            results.errors[name] = f"{type(error).__name__}: {error}"
            say(f"{name} FAILED: {results.errors[name]}")
        say(f"── {name}: {time.perf_counter() - started:.0f} s")

    async def broker_limit() -> None:
        async with connected(system.url) as client:
            results.broker = await broker.measure(client, plan.broker_s, system.server.pid)
        say(f"broker: once more on a server that syncs every {NATS_DEFAULT_SYNC_INTERVAL} (nats-server's default)")
        unsynced = System(system.log_dir / "unsynced", system.store_parent, NATS_DEFAULT_SYNC_INTERVAL).start()
        try:
            async with connected(unsynced.url) as client:
                results.broker_unsynced = await broker.measure(client, plan.broker_s, unsynced.server.pid)
        finally:
            unsynced.close()

    async def approval_cycles() -> None:
        for rate in plan.failure_rates:
            for replicas in plan.replicas:
                results.cycles.append(
                    await cycles.run_scenario(system, replicas, rate, plan.warmup_s, plan.measure_s, plan.in_flight)
                )
        if plan.wire_s:
            results.wire = await cycles.run_scenario(system, 1, 0.0, 1.0, plan.wire_s, 20, count_wire=True)
        # The first scenario again, with the query side's indexer beside it: what it costs, its lag, its rebuild.
        results.cycles_with_index = await cycles.run_scenario(
            system, 1, 0.0, plan.warmup_s, plan.measure_s, plan.in_flight, with_indexer=True
        )
        # And with the notifier beside it, delivering every notification to a webhook: what telling people costs.
        async with catching() as catcher:
            results.cycles_with_notifier = await cycles.run_scenario(
                system, 1, 0.0, plan.warmup_s, plan.measure_s, plan.in_flight, catcher=catcher
            )

    async def latencies() -> None:
        results.latency = await latency.measure(system, plan.latency_rate, plan.latency_window, plan.latency_s)
        if TMPFS.is_dir() and not store_on_tmpfs:
            # The same fixed load with the broker's store in memory: what is left is CPU, the rest was the disk.
            say("latency: once more with the broker's store on tmpfs (its own nats-server)")
            tmpfs_system = System(system.log_dir / "tmpfs", TMPFS).start()
            try:
                results.latency += await latency.measure(
                    tmpfs_system, plan.latency_rate, plan.latency_window, plan.latency_s, ("fixed",), "store on tmpfs"
                )
            finally:
                tmpfs_system.close()

    async def history() -> None:
        async with connected(system.url) as client:
            results.state_load = await state_load.measure(client, list(plan.history_lengths))

    async def queries() -> None:
        results.query = await query.measure(system, databases, list(plan.query_sizes), plan.query_requests)

    async def memories() -> None:
        results.orchestrator_memory = await memory.orchestrator_memory(
            system, plan.waiting_target, plan.waiting_time_box_s
        )
        results.broadcaster_memory = await memory.broadcaster_memory(system, plan.websocket_clients)

    await section("1. broker limit", broker_limit)
    await section("2-3. approval cycles and messages per cycle", approval_cycles)
    await section("4. latency", latencies)
    await section("5. state load vs history length", history)
    await section("6. memory", memories)
    await section("7. the query side: list, search and inbox as the index grows", queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer, shorter scenarios")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where results and logs go")
    parser.add_argument(
        "--postgres-url",
        help="also measure the query side on this PostgreSQL database (postgresql+asyncpg://...; emptied first)",
    )
    parser.add_argument(
        "--store-dir",
        type=Path,
        help="where nats-server's temp store goes (default: the system's temp dir); e.g. /dev/shm to take the disk "
        "out of the picture",
    )
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    results = Results(
        mode="quick" if args.quick else "full",
        date=datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine(),
        plan=asdict(plan),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    started, interrupted = time.perf_counter(), False
    system = System(args.out / "logs", args.store_dir).start()
    filesystem = store_filesystem(system.server.store_dir)
    results.machine["store"] = f"{system.server.store_dir} on {filesystem}"
    results.machine["durability"] = f"sync_interval {DURABLE}: every write on disk before its ack"
    try:
        databases = {"sqlite": f"sqlite+aiosqlite:///{args.out.resolve() / 'logs' / 'query-index.sqlite'}"}
        databases |= {"postgresql": args.postgres_url} if args.postgres_url else {}
        asyncio.run(
            measure(system, plan, results, store_on_tmpfs=filesystem.split()[-1] == "tmpfs", databases=databases)
        )
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
        say("interrupted: stopping every process; the figures so far follow")
    finally:
        system.close()
    say(f"done in {time.perf_counter() - started:.0f} s; services' logs in {args.out / 'logs'}")

    table = rows(results)
    write_json(results, args.out / "results.json")
    write_html(results, table, args.out / "results.html")
    print()
    print(format_table(table))
    print()
    say(f"wrote {args.out / 'results.json'} and {args.out / 'results.html'}")
    return 130 if interrupted else 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
