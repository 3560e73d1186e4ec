"""A run's results as a Markdown report (pasted into docs/performance.md) and as JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bench.flows import STEPS
from bench.processes import CpuTime
from bench.run import Result

# docs/performance.md, "Targets": flows/s against the flow limit measured in the same run
# (bench/flow_limit.py), p99 per request at that load, API memory.
TARGET_LIMIT_RATIO = 0.5
TARGET_P99_MS = 100.0
TARGET_RSS_MIB = 200.0
TARGET_SQLITE_FLOWS = 100.0  # the embedded default, one process (--engine sqlite)


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(r: Result) -> str:
    out = [
        "## Flow benchmark",
        "",
        f"- machine: {r.machine['cpu']}, {r.machine['memory']}, Linux {r.machine['kernel']}, "
        f"Python {r.machine['python']}",
        f"- PostgreSQL {r.machine['postgresql']} ({r.machine['pg_settings']})",
        f"- options: {', '.join(f'{k}={v}' for k, v in r.options.items() if k != 'workdir')}",
        f"- load average: start `{r.loadavg_start}`, end `{r.loadavg_end}`"
        + (
            " — **above 1.0 at the start: rerun**"
            if float(r.loadavg_start.split()[0]) >= 1.0
            else ""
        ),
        f"- run took {r.total_seconds:.0f} s; logs in `{r.workdir}`",
        "",
        "| metric | value | target | met |",
        "| --- | ---: | ---: | :---: |",
        f"| flows/s ({r.flows} flows in {r.seconds:.1f} s) | {r.flows_per_s:.1f} | | |",
    ]
    if r.options.get("engine") == "sqlite":
        out.append(
            f"| SQLite flows/s, one process | {r.flows_per_s:.1f} | ≥ {TARGET_SQLITE_FLOWS:.0f} "
            f"| {_mark(r.flows_per_s >= TARGET_SQLITE_FLOWS)} |"
        )
    if r.limit is not None and r.limit_ratio is not None:
        out += [
            f"| flow limit (bench/sql/flow_limit.sql, {r.limit.clients} clients, "
            f"{r.limit.seconds} s) | {r.limit.flows_per_s:.0f} | | |",
            f"| flows/s ÷ flow limit | {r.limit_ratio:.3f} | ≥ {TARGET_LIMIT_RATIO} "
            f"| {_mark(r.limit_ratio >= TARGET_LIMIT_RATIO)} |",
        ]
    worst = max((r.latency_ms[s].p99 for s in STEPS if s in r.latency_ms), default=0.0)
    out.append(
        f"| worst per-request p99 | {worst:.1f} ms | < {TARGET_P99_MS:.0f} ms "
        f"| {_mark(worst < TARGET_P99_MS)} |"
    )
    if r.pgbench is not None and r.ratio is not None:
        out += [
            f"| pgbench TPC-B tps ({r.pgbench.clients} clients, scale {r.pgbench.scale}, "
            f"{r.pgbench.seconds} s) | {r.pgbench.tps:.0f} | | |",
            f"| flows/s ÷ pgbench tps | {r.ratio:.3f} | | |",
        ]
    server_cpu = r.cpu_s.get("api", CpuTime()).total + r.cpu_s.get("worker", CpuTime()).total
    per_flow = server_cpu / r.flows * 1000 if r.flows else 0.0
    out.append(f"| server CPU per flow (API + worker) | {per_flow:.2f} ms | | |")
    out.append(f"| machine CPU busy in window (all cores) | {r.machine_busy_pct:.0f} % | | |")
    api_rss = [v for k, v in r.peak_rss_mib.items() if k.startswith("api")]
    worst_rss = max(api_rss, default=0.0)
    out.append(
        f"| peak RSS, largest API worker | {worst_rss:.0f} MiB | < {TARGET_RSS_MIB:.0f} MiB "
        f"| {_mark(worst_rss < TARGET_RSS_MIB)} |"
    )
    out += _under_load(r)
    errors = sum(r.errors.values())
    out.append(
        f"| errors (whole run / measured window) | {errors} / {r.measured_errors} | 0 | "
        f"{_mark(errors == 0)} |"
    )
    out += [
        "",
        "| request | count | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step in (*STEPS, "flow"):
        s = r.latency_ms.get(step)
        if s is not None:
            out.append(
                f"| {step} | {s.count} | {s.p50:.1f} | {s.p95:.1f} | {s.p99:.1f} | {s.max:.1f} |"
            )
    out += [
        "",
        "| process | CPU s in window | CPU ms per flow | of which in the kernel | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for role, cpu in r.cpu_s.items():
        rss = f"{r.peak_rss_mib[role]:.0f}" if role in r.peak_rss_mib else ""
        per = cpu.total / r.flows * 1000 if r.flows else 0.0
        kernel = 100 * cpu.system / cpu.total if cpu.total else 0.0
        out.append(f"| {role} | {cpu.total:.1f} | {per:.2f} | {kernel:.0f} % | {rss} |")
    out += ["", "| check | ok | detail |", "| --- | :---: | --- |"]
    out += [f"| {c.name} | {_mark(c.ok)} | {c.detail} |" for c in r.checks]
    if r.error_samples:
        out += ["", "Errors seen:", ""] + [f"- `{e}`" for e in r.error_samples]
    if r.profile is not None:
        out += _profile(r)
    return "\n".join(out) + "\n"


def _under_load(r: Result) -> list[str]:
    """Recovery latency and webhook lag, measured while the flow load ran."""
    out = []
    rec = r.recovery
    if rec is not None:
        wait = rec.wait_s
        out.append(
            f"| lost notification → paid through the recovery job, p50 / p99 / max "
            f"({rec.recovered} of {rec.probes} probes, {rec.recovered_under_load} under load; "
            f"recovery delay {rec.recover_after:g} s) | "
            + (f"{wait.p50:.1f} / {wait.p99:.1f} / {wait.max:.1f} s" if wait else "-")
            + " | | |"
        )
        if rec.late_s is not None:
            out.append(f"| of which after the recovery delay, p99 | {rec.late_s.p99:.2f} s | | |")
    hook = r.webhook
    if hook is not None:
        lag = hook.lag_ms
        out.append(
            f"| webhook delivery lag (event created → local receiver), p50 / p99 / max "
            f"({hook.delivered} of {hook.events} events of the window) | "
            + (f"{lag.p50:.0f} / {lag.p99:.0f} / {lag.max:.0f} ms" if lag else "-")
            + " | | |"
        )
    return out


def _profile(r: Result) -> list[str]:
    p = r.profile
    assert p is not None
    out = [
        "",
        f"### Profile of the API workers ({p.samples} busy samples, py-spy raw stacks in "
        f"`{p.raw_paths[0].parent}`)",
        "",
        "| layer (leaf frame) | share of busy CPU |",
        "| --- | ---: |",
    ]
    out += [f"| {name} | {share:.1f} % |" for name, share in p.by_layer]
    out += ["", "| function (inclusive) | share |", "| --- | ---: |"]
    out += [f"| `{name}` | {share:.1f} % |" for name, share in p.inclusive]
    return out


def to_json(r: Result) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    data = dataclasses.asdict(r)
    data["ratio"] = r.ratio
    data["limit_ratio"] = r.limit_ratio
    data["ok"] = r.ok
    return json.dumps(data, default=default, indent=2)
