"""The run's figures: a table on the terminal, JSON, and a self-contained HTML page with inline SVG charts."""

import html
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.broker import CONCURRENT_WRITERS, BrokerLimit
from bench.cycles import CycleResult
from bench.latency import LatencyResult
from bench.memory import BroadcasterMemory, OrchestratorMemory
from bench.query import QueryFigure
from bench.state_load import LoadCost


@dataclass
class Results:
    mode: str
    date: str
    machine: dict[str, str]
    plan: dict[str, object]
    broker: BrokerLimit | None = None  # durable, as shipped: the limit every ratio is taken against
    broker_unsynced: BrokerLimit | None = None  # nats-server's default (synced every 2 min): what durability costs
    cycles: list[CycleResult] = field(default_factory=list)
    wire: CycleResult | None = None
    latency: list[LatencyResult] = field(default_factory=list)
    state_load: list[LoadCost] = field(default_factory=list)
    orchestrator_memory: OrchestratorMemory | None = None
    broadcaster_memory: BroadcasterMemory | None = None
    cycles_with_index: CycleResult | None = None  # the first scenario again, with the indexer beside it
    cycles_with_notifier: CycleResult | None = None  # and with the notifier beside it, delivering to a webhook
    query: list[QueryFigure] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def atomic_limit(broker: BrokerLimit) -> float:
    """Atomic batches/s: the better of one writer and several (the disk's sync rate; it varies from run to run)."""
    return max(broker.atomic_per_s, broker.atomic_concurrent_per_s)


@dataclass
class Row:
    section: str
    figure: str
    value: str
    vs_broker: str


def _percent(share: float) -> str:
    return f"{100 * share:.1f} % of limit"


def cpu_rows(results: Results) -> list[Row]:
    """Where the cores go: each group's CPU per cycle, and the cycles/s the machine's cores would allow if everything
    but nats-server cost nothing (the broker's own work per cycle is the floor the services add to)."""
    cores, table = int(results.machine.get("cpus", "1")), []
    for cycle in results.cycles:
        per_cycle_ms = {name: 10 * share / cycle.cycles_per_s for name, share in cycle.cpu.items()}  # % of a core
        total = sum(per_cycle_ms.values())
        value = ", ".join(f"{name} {ms:.2f}" for name, ms in per_cycle_ms.items()) + f"; total {total:.2f} ms"
        name = f"×{cycle.replicas}, send failures {cycle.send_failure_rate:g}"
        table.append(Row("CPU/cycle", name, value, f"{cores} cores ÷ total = {1000 * cores / total:,.0f} cycles/s"))
    if results.cycles and results.broker and (server_ms := results.cycles[0].cpu.get("nats-server")):
        first, broker = results.cycles[0], results.broker
        server_ms = 10 * server_ms / first.cycles_per_s
        per_message_us = 1000 * server_ms / first.per_cycle.stored
        table.append(
            Row(
                "CPU/cycle",
                "nats-server per stored message: in the cycles (first scenario) / at the limit",
                f"{per_message_us:.1f} / {broker.server_cpu_us_per_msg:.1f} µs",
                "",
            )
        )
        per_limit_cycle = broker.in_flight_per_s / first.per_cycle.stored  # the ratio's denominator
        ceiling = 1000 * cores / server_ms
        table.append(
            Row(
                "CPU/cycle",
                "ceiling if only nats-server used the cores (first scenario)",
                f"{ceiling:,.0f} cycles/s",
                _percent(ceiling / per_limit_cycle),
            )
        )
        if results.wire and results.wire.wire:
            # Every message on the wire is sent or taken by one of the services' Python clients, at no less than
            # the limit's client spent on each of its two (a publish out, its ack in).
            client_ms = sum(results.wire.wire.values()) * broker.client_cpu_us_per_msg / 2 / 1000
            ceiling = 1000 * cores / (server_ms + client_ms)
            table.append(
                Row(
                    "CPU/cycle",
                    f"ceiling if the services did only their NATS I/O ({client_ms:.2f} ms)",
                    f"{ceiling:,.0f} cycles/s",
                    _percent(ceiling / per_limit_cycle),
                )
            )
    return table


def rows(results: Results) -> list[Row]:
    """Every figure, with how it compares to the broker: a rate as the share of the broker's limit it uses, a
    duration as a multiple of one awaited publish round trip."""
    broker, table = results.broker, []
    limit = broker.in_flight_per_s if broker else None
    round_trip_ms = 1000 / broker.awaited_per_s if broker else None

    def times_round_trip(ms: float) -> str:
        return f"{ms / round_trip_ms:,.0f} × round trip" if round_trip_ms else "—"

    if broker and limit is not None:
        table += [
            Row(
                "broker",
                "durable (synced before each ack): awaited publish",
                f"{broker.awaited_per_s:,.0f} msg/s",
                _percent(broker.awaited_per_s / limit),
            ),
            Row("broker", "durable: publish_async, the limit", f"{limit:,.0f} msg/s", "100 %"),
            Row(
                "broker",
                "atomic batch of 2, one at a time",
                f"{broker.atomic_per_s:,.0f} batch/s",
                _percent(2 * broker.atomic_per_s / limit),
            ),
            Row(
                "broker",
                f"atomic batch of 2, {CONCURRENT_WRITERS} writers",
                f"{broker.atomic_concurrent_per_s:,.0f} batch/s",
                _percent(2 * broker.atomic_concurrent_per_s / limit),
            ),
        ]
    if broker and limit is not None and (unsynced := results.broker_unsynced):
        table += [
            Row(
                "broker",
                "not durable (synced every 2 min): awaited publish",
                f"{unsynced.awaited_per_s:,.0f} msg/s",
                f"durable is {broker.awaited_per_s / unsynced.awaited_per_s:.2f} × this",
            ),
            Row(
                "broker",
                "not durable: publish_async",
                f"{unsynced.in_flight_per_s:,.0f} msg/s",
                f"durable is {limit / unsynced.in_flight_per_s:.2f} × this",
            ),
        ]
    for cycle in results.cycles:
        name = f"×{cycle.replicas}, send failures {cycle.send_failure_rate:g}"
        errored = cycle.errored_output + cycle.errored_other
        ratio = _percent(cycle.cycles_per_s / (limit / cycle.per_cycle.stored)) if limit else "—"
        if broker:
            commits = cycle.cycles_per_s * cycle.per_cycle.atomic_commits / atomic_limit(broker)
            ratio += f"; {100 * commits:.0f} % of atomic"
        value = f"{cycle.cycles_per_s:,.1f} ({cycle.finished} finished, {errored} errored)"
        table.append(Row("cycles/s", name, value, ratio))
    table += cpu_rows(results)
    for cycle in results.cycles:
        ceiling = f"limit ÷ msgs = {limit / cycle.per_cycle.stored:,.0f} cycles/s" if limit else "—"
        name = f"stored, ×{cycle.replicas}, failures {cycle.send_failure_rate:g}"
        table.append(Row("msgs/cycle", name, f"{cycle.per_cycle.stored:.2f}", ceiling))
    if results.cycles:
        first = results.cycles[0].per_cycle
        parts = [
            ("client commands", first.client_commands),
            ("processor results", first.results),
            ("timer messages", first.timer_messages),
            ("events", first.events),
            ("jobs", first.jobs),
            ("KV puts", first.kv_puts),
        ]
        table += [Row("msgs/cycle", f"  of which {name} (first scenario)", f"{value:.2f}", "") for name, value in parts]
        table.append(Row("msgs/cycle", "decisions (commands that appended events)", f"{first.decisions:.2f}", ""))
        atomic_ceiling = atomic_limit(broker) / first.atomic_commits if broker and first.atomic_commits else None
        table.append(
            Row(
                "msgs/cycle",
                "atomic batch commits (shared by decisions)",
                f"{first.atomic_commits:.2f}",
                f"atomic limit ÷ commits = {atomic_ceiling:,.0f} cycles/s" if atomic_ceiling else "—",
            )
        )
        table.append(
            Row(
                "msgs/cycle",
                "step-timeout timers left to fire",
                f"{first.timers_left:.2f}",
                "each a no-op command later",
            )
        )
    if results.wire and results.wire.wire:
        total = sum(results.wire.wire.values())
        table.append(
            Row(
                "msgs/cycle",
                "on the wire (every NATS message)",
                f"{total:.1f}",
                f"limit ÷ msgs = {limit / total:,.0f} cycles/s" if limit else "—",
            )
        )
        table += [
            Row("msgs/cycle", f"  of which {kind}", f"{count:.2f}", "") for kind, count in results.wire.wire.items()
        ]
    for result in results.latency:
        load = (
            f"{result.offered_per_s:g}/s offered"
            if result.load == "fixed"
            else f"saturation, {result.in_flight} in flight"
        ) + result.store_suffix
        paths = (
            ("WebSocket", result.websocket),
            ("JetStream consumer", result.stream),
            ("core NATS, pre-commit", result.nats),
        )
        for path, figures in paths:
            value = (
                f"p50 {figures.p50_ms:,.1f} / p95 {figures.p95_ms:,.1f} / p99 {figures.p99_ms:,.1f} / "
                f"max {figures.max_ms:,.1f} ms"
            )
            table.append(
                Row(
                    "latency",
                    f"{load} ({result.achieved_per_s:,.0f}/s), {path}",
                    value,
                    f"p50 = {times_round_trip(figures.p50_ms)}",
                )
            )
    for cost in results.state_load:
        table.append(
            Row(
                "state load",
                f"{cost.events:,} events, snapshot",
                f"{cost.snapshot_ms:,.2f} ms",
                times_round_trip(cost.snapshot_ms),
            )
        )
        table.append(
            Row(
                "state load",
                f"{cost.events:,} events, full replay",
                f"{cost.replay_ms:,.1f} ms",
                times_round_trip(cost.replay_ms),
            )
        )
    if memory := results.orchestrator_memory:
        boxed = f", time-boxed at {memory.seconds:.0f} s (target {memory.target:,})" if memory.time_boxed else ""
        table.append(Row("memory", "orchestrator idle", f"{memory.idle_mib:.1f} MiB", "—"))
        table.append(
            Row(
                "memory",
                f"orchestrator, {memory.reached:,} waiting{boxed}",
                f"{memory.final_mib:.1f} MiB (peak {memory.peak_mib:.1f})",
                "—",
            )
        )
        growth = (memory.final_mib - memory.idle_mib) * 1024 / max(memory.reached, 1)
        table.append(Row("memory", "orchestrator growth per waiting workflow", f"{growth:.1f} KiB", "—"))
        table.append(
            Row(
                "memory",
                "orchestrator /metrics page, idle → end",
                f"{memory.metrics_idle_bytes:,} → {memory.metrics_final_bytes:,} B",
                "—",
            )
        )
        table.append(
            Row(
                "memory",
                "processor, idle → end",
                f"{memory.processor_idle_mib:.1f} → {memory.processor_final_mib:.1f} MiB",
                "—",
            )
        )
    if memory := results.broadcaster_memory:
        table.append(Row("memory", "broadcaster idle", f"{memory.idle_mib:.1f} MiB", "—"))
        table.append(
            Row("memory", f"broadcaster, {memory.clients:,} WebSocket clients", f"{memory.connected_mib:.1f} MiB", "—")
        )
        rate = memory.burst_events * memory.clients / memory.burst_s
        table.append(
            Row(
                "memory",
                f"broadcaster after {memory.burst_events} events to each",
                f"{memory.after_burst_mib:.1f} MiB ({rate:,.0f} WebSocket msgs/s)",
                "—",
            )
        )
    table += query_rows(results)
    for section, error in results.errors.items():
        table.append(Row(section, "FAILED", error[:100], ""))
    return table


QUERY_TARGET_MS = (20.0, 50.0)  # p50, p99: flat from a thousand workflows to a million
LAG_TARGET_MS = 100.0
REBUILD_TARGET = 20_000  # events/s


def query_rows(results: Results) -> list[Row]:
    """The query side: what the indexer costs the cycles, its lag and rebuild, and each query's latency by size."""
    table = []
    if (indexed := results.cycles_with_index) and results.cycles:
        without = results.cycles[0]
        table.append(
            Row(
                "query side",
                "cycles/s ×1, failures 0: without / with the indexer",
                f"{without.cycles_per_s:,.1f} / {indexed.cycles_per_s:,.1f}",
                f"with is {indexed.cycles_per_s / without.cycles_per_s:.2f} × without",
            )
        )
    if (notifying := results.cycles_with_notifier) and results.cycles:
        without = results.cycles[0]
        table.append(
            Row(
                "notifications",
                "cycles/s ×1, failures 0: without / with the notifier",
                f"{without.cycles_per_s:,.1f} / {notifying.cycles_per_s:,.1f}",
                f"with is {notifying.cycles_per_s / without.cycles_per_s:.2f} × without",
            )
        )
        cpu = notifying.cpu.get("notifier", 0.0)
        table.append(
            Row(
                "notifications",
                "delivered per cycle (a webhook subscription to everything); the notifier's CPU",
                f"{notifying.notified or 0:.2f}; {cpu:.0f} % of a core",
                "",
            )
        )
    if indexed and (index := indexed.index):
        met = "met" if index.lag_p99_ms < LAG_TARGET_MS else "NOT met"
        table.append(
            Row(
                "query side",
                "projection lag at the cycles' peak, p50 / p99",
                f"{index.lag_p50_ms:,.1f} / {index.lag_p99_ms:,.1f} ms",
                f"target p99 < {LAG_TARGET_MS:.0f} ms: {met}",
            )
        )
        met = "met" if index.rebuild_events_per_s >= REBUILD_TARGET else "NOT met"
        table.append(
            Row(
                "query side",
                f"rebuild from the read model ({index.rebuild_events:,} events)",
                f"{index.rebuild_s:.2f} s, {index.rebuild_events_per_s:,.0f} events/s",
                f"target ≥ {REBUILD_TARGET:,}/s: {met}",
            )
        )
    for figure in results.query:
        met = "met" if figure.p50_ms < QUERY_TARGET_MS[0] and figure.p99_ms < QUERY_TARGET_MS[1] else "NOT met"
        table.append(
            Row(
                "query side",
                f"{figure.database}, {figure.workflows:,} workflows (seeded), {figure.query}",
                f"p50 {figure.p50_ms:,.1f} / p99 {figure.p99_ms:,.1f} ms",
                f"target p50 < {QUERY_TARGET_MS[0]:.0f}, p99 < {QUERY_TARGET_MS[1]:.0f}: {met}",
            )
        )
    return table


def format_table(table: list[Row]) -> str:
    headers = Row("section", "figure", "value", "vs broker")
    widths = [max(len(getattr(row, name)) for row in [headers, *table]) for name in ("section", "figure", "value")]
    lines = []
    for number, row in enumerate([headers, *table]):
        cells = (row.section.ljust(widths[0]), row.figure.ljust(widths[1]), row.value.ljust(widths[2]), row.vs_broker)
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def write_json(results: Results, path: Path) -> None:
    path.write_text(json.dumps(asdict(results), indent=2) + "\n")


# ------------------------------------------------------------------------------------------------------------ SVG

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 300, 70, 20, 40, 60
COLOURS = ["#3366aa", "#dd7722", "#449944", "#aa3355", "#7755aa"]


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _scale(values: list[float], log: bool):
    top = max(values, default=1) or 1
    if log:
        low = 10 ** math.floor(math.log10(max(min(v for v in values if v > 0), 1e-3)))
        high = 10 ** math.ceil(math.log10(top))
        ticks = [10**e for e in range(round(math.log10(low)), round(math.log10(high)) + 1)]

        def position(value: float) -> float:
            value = max(value, low)
            return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
    else:
        step = 10 ** math.floor(math.log10(top))
        step = step / 2 if top / step < 3 else step
        high = math.ceil(top / step) * step
        ticks = [step * n for n in range(int(high / step) + 1)]

        def position(value: float) -> float:
            return value / high

    return position, ticks


def bar_chart(
    title: str,
    groups: list[str],
    series: Sequence[tuple[str, Sequence[float | None]]],  # None: no figure for that group
    unit: str,
    log: bool = False,
    reference: tuple[str, float] | None = None,
) -> str:
    values = [v for _, vs in series for v in vs if v is not None] + ([reference[1]] if reference else [])
    position, ticks = _scale(values, log)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="11"><text x="{LEFT}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>'
    ]
    for tick in ticks:
        y = TOP + plot_h * (1 - position(tick))
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    out.append(
        f'<text x="12" y="{TOP + plot_h / 2}" transform="rotate(-90 12 {TOP + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(unit)}{" (log)" if log else ""}</text>'
    )
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = LEFT + g * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series):
            value = vs[g]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            h = plot_h * position(value)
            x = x0 + s * bar_w
            out.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[s % len(COLOURS)]}"><title>{html.escape(name)}: {_number(value)} '
                f"{html.escape(unit)}</title></rect>"
                f'<text x="{x + bar_w / 2:.1f}" y="{TOP + plot_h - h - 3:.1f}" text-anchor="middle" '
                f'font-size="9">{_number(value)}</text>'
            )
        out.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">'
            f"{html.escape(group)}</text>"
        )
    if reference:
        y = TOP + plot_h * (1 - position(reference[1]))
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c00" '
            f'stroke-dasharray="5,3"/><text x="{WIDTH - RIGHT}" y="{y - 4:.1f}" text-anchor="end" '
            f'fill="#c00">{html.escape(reference[0])}: {_number(reference[1])}</text>'
        )
    for s, (name, _) in enumerate(series):
        x = LEFT + s * 170
        out.append(
            f'<rect x="{x}" y="{HEIGHT - 24}" width="10" height="10" fill="{COLOURS[s % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 15}">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, points: Sequence[tuple[float, float]], x_label: str, y_label: str) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_max = max((x for x, _ in points), default=1) or 1
    y_position, ticks = _scale([y for _, y in points], log=False)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="11"><text x="{LEFT}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>'
    ]
    for tick in ticks:
        y = TOP + plot_h * (1 - y_position(tick))
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    coordinates = " ".join(
        f"{LEFT + plot_w * x / x_max:.1f},{TOP + plot_h * (1 - y_position(y)):.1f}" for x, y in points
    )
    out.append(f'<polyline points="{coordinates}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 20}" text-anchor="middle">{html.escape(x_label)} '
        f"(0 – {x_max:,.0f})</text>"
    )
    out.append(
        f'<text x="12" y="{TOP + plot_h / 2}" transform="rotate(-90 12 {TOP + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text></svg>'
    )
    return "".join(out)


def charts(results: Results) -> list[str]:
    out, broker = [], results.broker
    if results.cycles:
        replicas = sorted({c.replicas for c in results.cycles})
        rates = sorted({c.send_failure_rate for c in results.cycles})
        series = [
            (
                f"send failures {rate:g}",
                [
                    next(
                        (c.cycles_per_s for c in results.cycles if c.replicas == r and c.send_failure_rate == rate),
                        None,
                    )
                    for r in replicas
                ],
            )
            for rate in rates
        ]
        reference = None
        if broker and results.cycles[0].per_cycle.atomic_commits:
            ceiling = atomic_limit(broker) / results.cycles[0].per_cycle.atomic_commits
            reference = ("atomic-commit ceiling", ceiling)
        out.append(
            bar_chart(
                "Full approval cycles per second",
                [f"×{r} replicas" for r in replicas],
                series,
                "cycles/s",
                reference=reference,
            )
        )
    if broker:
        groups = ["awaited publish", "publish_async", "atomic ×1 (msgs)", f"atomic ×{CONCURRENT_WRITERS} (msgs)"]
        values = [
            broker.awaited_per_s,
            broker.in_flight_per_s,
            2 * broker.atomic_per_s,
            2 * broker.atomic_concurrent_per_s,
        ]
        if results.cycles:
            best = max(results.cycles, key=lambda c: c.cycles_per_s)
            groups.append("best cycles × msgs")
            values.append(best.cycles_per_s * best.per_cycle.stored)
        out.append(
            bar_chart(
                "Broker throughput, and what the cycles put through it",
                groups,
                [("msg/s", values)],
                "messages/s",
                log=True,
            )
        )
    if results.latency:
        groups = [
            f"{r.load}"
            + (f" {r.offered_per_s:g}/s" if r.offered_per_s else f" {r.in_flight} in flight")
            + r.store_suffix
            for r in results.latency
        ]
        series = [
            (name, [getattr(r.websocket, f"{name}_ms") for r in results.latency])
            for name in ("p50", "p95", "p99", "max")
        ]
        out.append(bar_chart("Latency: command publish → event on a WebSocket", groups, series, "ms", log=True))
    if results.state_load:
        groups = [f"{c.events:,} events" for c in results.state_load]
        series = [
            ("snapshot + tail", [c.snapshot_ms for c in results.state_load]),
            ("full replay", [c.replay_ms for c in results.state_load]),
        ]
        out.append(bar_chart("Loading a workflow's state", groups, series, "ms", log=True))
    if (memory := results.orchestrator_memory) and memory.samples:
        out.append(
            line_chart(
                "Orchestrator RSS as workflows wait for approval",
                memory.samples,
                "workflows waiting for approval",
                "RSS MiB",
            )
        )
    if memory := results.broadcaster_memory:
        out.append(
            bar_chart(
                "Broadcaster RSS",
                ["idle", f"{memory.clients:,} clients", "after the burst"],
                [("RSS", [memory.idle_mib, memory.connected_mib, memory.after_burst_mib])],
                "MiB",
            )
        )
    return out


def write_html(results: Results, table: list[Row], path: Path) -> None:
    machine = ", ".join(f"{k}: {v}" for k, v in results.machine.items())
    cells = "".join(
        f"<tr><td>{html.escape(r.section)}</td><td>{html.escape(r.figure)}</td><td>{html.escape(r.value)}</td>"
        f"<td>{html.escape(r.vs_broker)}</td></tr>"
        for r in table
    )
    body = "\n".join(f"<div>{chart}</div>" for chart in charts(results))
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Approval workflows: benchmark {html.escape(results.date)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} div{{margin:1em 0}}</style></head><body>
<h1>Approval workflows: benchmark</h1>
<p>{html.escape(results.date)}, {html.escape(results.mode)} mode; {html.escape(machine)}.
One run on one machine: figures move by tens of percent between runs.</p>
{body}
<h2>Every figure</h2>
<table><tr><th>section</th><th>figure</th><th>value</th><th>vs broker</th></tr>{cells}</table>
</body></html>
""")
