"""The benchmark's CPU rows: each group's CPU per cycle, and the ceiling the broker's own CPU per cycle sets."""

from dataclasses import replace

from bench.broker import BrokerLimit
from bench.cycles import CycleResult, PerCycle
from bench.latency import LatencyResult, Percentiles
from bench.report import Results, cpu_rows, rows

# 10 stored messages per cycle
PER_CYCLE = PerCycle(
    client_commands=3,
    results=1,
    timer_messages=1,
    events=3,
    jobs=1,
    kv_puts=1,
    timers_left=0,
    decisions=3,
    atomic_commits=0.1,
)


def results(cpu: dict[str, float], wire: dict[str, float] | None = None) -> Results:
    cycle = CycleResult(
        replicas=1,
        send_failure_rate=0.0,
        in_flight=200,
        measured_s=8.0,
        cycles_per_s=500.0,
        finished=3000,
        errored_output=1000,
        errored_other=0,
        cycle_p50_ms=1.0,
        cycle_p95_ms=2.0,
        total_cycles=4000,
        rejections={},
        per_cycle=PER_CYCLE,
        cpu=cpu,
    )
    broker = BrokerLimit(
        awaited_per_s=5000,
        in_flight_per_s=40_000,
        atomic_per_s=400,
        atomic_concurrent_per_s=450,
        payload_bytes=400,
        server_cpu_us_per_msg=12.5,
        client_cpu_us_per_msg=20.0,
    )
    counted = replace(cycle, wire=wire) if wire else None
    return Results(
        mode="full", date="today", machine={"cpus": "2"}, plan={}, broker=broker, cycles=[cycle], wire=counted
    )


def test_cpu_per_cycle_and_what_the_cores_allow():
    # At 500 cycles/s, 50 % of a core is 1 ms per cycle.
    per_group, per_message, ceiling = cpu_rows(results({"orchestrator": 100.0, "nats-server": 50.0}))
    assert per_group.value == "orchestrator 2.00, nats-server 1.00; total 3.00 ms"
    assert per_group.vs_broker == "2 cores ÷ total = 667 cycles/s"
    assert per_message.value == "100.0 / 12.5 µs"  # 1 ms over 10 stored messages
    # nats-server alone: 2 cores ÷ 1 ms = 2 000 cycles/s, against the limit's 40 000 ÷ 10 = 4 000.
    assert (ceiling.value, ceiling.vs_broker) == ("2,000 cycles/s", "50.0 % of limit")


def test_no_ceiling_without_the_servers_cpu():
    assert len(cpu_rows(results({"orchestrator": 100.0}))) == 1


def test_the_ceiling_with_the_services_own_nats_io():
    # 40 wire messages a cycle at 10 µs each (20 µs per publish and its ack): 0.4 ms on top of nats-server's 1 ms.
    *_, ceiling = cpu_rows(results({"nats-server": 50.0}, wire={"publish": 30.0, "reply": 10.0}))
    assert ceiling.figure == "ceiling if the services did only their NATS I/O (0.40 ms)"
    assert (ceiling.value, ceiling.vs_broker) == ("1,429 cycles/s", "35.7 % of limit")


def test_a_latency_measured_with_the_store_on_tmpfs_is_labelled_so():
    figures = Percentiles(samples=10, p50_ms=5.0, p95_ms=8.0, p99_ms=9.0, max_ms=10.0)
    measured = LatencyResult(
        load="fixed",
        offered_per_s=200,
        in_flight=None,
        achieved_per_s=198,
        websocket=figures,
        stream=figures,
        nats=figures,
        cpu={},
    )
    run = replace(results({"orchestrator": 100.0}), latency=[measured, replace(measured, store="store on tmpfs")])
    labels = [row.figure for row in rows(run) if row.section == "latency" and row.figure.endswith("WebSocket")]
    assert labels == ["200/s offered (198/s), WebSocket", "200/s offered, store on tmpfs (198/s), WebSocket"]


def test_the_durable_limit_is_the_one_ratios_use_and_the_unsynced_one_shows_what_durability_costs():
    figures = results({"nats-server": 50.0})
    assert figures.broker is not None
    figures.broker_unsynced = replace(figures.broker, awaited_per_s=10_000, in_flight_per_s=160_000)
    table = {row.figure: row for row in rows(figures) if row.section in ("broker", "cycles/s")}
    assert table["durable: publish_async, the limit"].value == "40,000 msg/s"
    assert table["not durable: publish_async"].vs_broker == "durable is 0.25 × this"
    assert table["not durable (synced every 2 min): awaited publish"].vs_broker == "durable is 0.50 × this"
    # 500 cycles/s of 10 messages against the durable 40 000 msg/s: 12.5 %, whatever the unsynced server takes.
    assert table["×1, send failures 0"].vs_broker.startswith("12.5 % of limit")
