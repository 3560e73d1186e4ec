"""The bench's pieces that need no server: the webhook receiver, lag and rate arithmetic,
and the reports' new rows (no timing is asserted; the numbers here are made up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench import scaleout
from bench.http import Connection
from bench.probes import Recovery, WebhookLag, lag_of
from bench.receiver import Receiver
from bench.report import markdown
from bench.run import Options, Result
from bench.stats import Summary

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_the_receiver_answers_200_and_notes_each_event_once() -> None:
    receiver = Receiver()
    await receiver.start()
    conn = Connection(receiver.host, receiver.port)
    try:
        for event_id in ("evt_1", "evt_2", "evt_1"):  # one keep-alive connection
            answer = await conn.request(
                "POST", "/webhooks", b'{"id": "x"}', {"Tuition-Event-Id": event_id}
            )
            assert answer.status == 200
        refused = await Connection(receiver.host, receiver.port).request("POST", "/", b"{}")
    finally:
        conn.close()
        await receiver.stop()
    assert refused.status == 400  # not a Tuition delivery: no event id
    assert set(receiver.first_seen) == {"evt_1", "evt_2"}
    assert receiver.received == 2
    assert receiver.repeats == 1


def test_webhook_lag_is_first_arrival_minus_created_at() -> None:
    receiver = Receiver()
    receiver.note("evt_a", T0 + timedelta(milliseconds=40))
    receiver.note("evt_a", T0 + timedelta(seconds=9))  # a repeat does not move the lag
    receiver.note("evt_b", T0 + timedelta(milliseconds=250))
    lag = lag_of([("evt_a", T0), ("evt_b", T0), ("evt_c", T0)], receiver)
    assert (lag.events, lag.delivered, lag.repeats) == (3, 2, 1)
    assert lag.lag_ms is not None
    assert round(lag.lag_ms.max) == 250
    assert round(lag.lag_ms.p50) == 40


def test_rates_count_from_first_to_last_arrival_and_efficiency_is_per_process() -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 2, 4)]
    assert scaleout.rate_between(times) == 0.75  # 3 more arrivals in 4 s
    assert scaleout.rate_between(times[:1]) == 0.0
    assert scaleout.efficiency(150.0, 3, 100.0) == 0.5
    assert scaleout.efficiency(10.0, 2, 0.0) is None


def test_the_scaleout_report_has_a_row_per_process_count() -> None:
    result = scaleout.Result(
        options={k: str(v) for k, v in vars(scaleout.Options()).items()},
        loadavg_start="2.50 1.00 0.50 1/100 1",
        loadavg_end="2.00 1.00 0.50 1/100 1",
        limit_flows_per_s=600.0,
    )
    for n, fps in ((1, 50.0), (2, 80.0), (4, 90.0)):
        result.api.append(scaleout.ApiRow(n, fps, 12.0, 90.0, 5.0, 4.0, 99.0, ok=True))
    result.workers = [
        scaleout.WorkerRow(1, 600, 600, 200.0, 150, 150, 40.0, 5.0, 4.0, ok=True),
        scaleout.WorkerRow(3, 600, 600, 300.0, 150, 150, 60.0, 4.0, 6.0, ok=False, failed=["x"]),
    ]
    text = scaleout.markdown(result)
    assert "| 2 | 80.0 | 1.60 x | 80 % |" in text
    assert "| 4 | 90.0 | 1.80 x | 45 % |" in text
    assert "| 3 | 300 (600/600) | 50 % | 60 (150/150) | 50 % |" in text
    assert "busy machine" in text
    assert "- workers 3: x" in text
    assert "600 flows/s" in text


def test_the_flow_report_shows_recovery_and_webhook_lag_under_load() -> None:
    result = Result(
        options={k: str(v) for k, v in vars(Options()).items()},
        machine={
            "cpu": "2 x test",
            "memory": "1 GiB",
            "kernel": "6",
            "python": "3.11",
            "postgresql": "15",
            "pg_settings": "",
        },
        loadavg_start="0.10 0.10 0.10 1/100 1",
        flows=10,
        flows_per_s=5.0,
        recovery=Recovery(
            recover_after=10.0,
            probes=4,
            recovered=4,
            recovered_under_load=3,
            wait_s=Summary.of([10.5, 11.0, 11.5, 14.0]),
            late_s=Summary.of([0.2, 0.5, 1.0, 3.5]),
        ),
        webhook=WebhookLag(events=20, delivered=20, lag_ms=Summary.of([30.0, 40.0, 900.0])),
    )
    text = markdown(result)
    assert "(4 of 4 probes, 3 under load; recovery delay 10 s) | 11.0 / 14.0 / 14.0 s" in text
    assert "of which after the recovery delay, p99 | 3.50 s" in text
    assert "(20 of 20 events of the window) | 40 / 900 / 900 ms" in text


def test_api_zero_runs_the_worker_phase_alone() -> None:
    assert scaleout._api_counts("0") == ()
    assert scaleout._api_counts("1,2") == (1, 2)
