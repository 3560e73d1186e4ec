"""The API supervisor's restart policy, with fake worker processes and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tuition.server import MAX_RESTART_DELAY_SECONDS, MIN_LIFETIME_SECONDS, Supervisor, _Slot


@dataclass
class FakeProcess:
    alive: bool = True
    pid: int = 1
    exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.alive


def _supervisor(monkeypatch: pytest.MonkeyPatch) -> tuple[Supervisor, list[FakeProcess]]:
    started: list[FakeProcess] = []

    def start(_self: Supervisor) -> FakeProcess:
        started.append(FakeProcess(pid=len(started) + 1))
        return started[-1]

    monkeypatch.setattr(Supervisor, "_start", start)
    sup = Supervisor("127.0.0.1", 0, workers=1)
    sup._slots = [_Slot(sup._start(), started=0.0)]  # type: ignore[arg-type]
    return sup, started


def test_a_worker_dying_at_its_first_start_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sup, started = _supervisor(monkeypatch)
    started[0].alive = False
    with pytest.raises(SystemExit) as stopped:
        sup._tend(now=MIN_LIFETIME_SECONDS - 1)
    assert stopped.value.code == 1
    assert len(started) == 1


def test_a_crashed_worker_is_restarted_at_once_and_one_dying_young_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sup, started = _supervisor(monkeypatch)
    now = 100.0
    started[-1].alive = False  # lived 100 s: a crash
    sup._tend(now)
    sup._tend(now)
    assert len(started) == 2  # restarted at once

    delays = []
    for _ in range(7):
        started[-1].alive = False  # dies 1 s after each restart
        now += 1
        sup._tend(now)
        restart_at = sup._slots[0].restart_at
        assert restart_at is not None
        delays.append(restart_at - now)
        sup._tend(restart_at - 0.1)
        count = len(started)
        sup._tend(restart_at)
        assert len(started) == count + 1
        now = restart_at
    assert delays == [2, 4, 8, 16, MAX_RESTART_DELAY_SECONDS, 30, 30]

    now += MIN_LIFETIME_SECONDS + 1  # this one lives: the pause starts over
    started[-1].alive = False
    sup._tend(now)
    assert sup._slots[0].restart_at == now
    assert sup._slots[0].young_deaths == 0


def test_stopping_leaves_a_worker_waiting_for_its_restart_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sup, started = _supervisor(monkeypatch)
    started[0].alive = False
    sup._slots[0].restart_at = 5.0  # dead, waiting for its restart
    sup._stop_all()  # FakeProcess has no terminate() or join(): touching it would raise
