"""Smart channel choice: rank the enabled channels for an order, skip broken ones.

``{"channel": "auto"}`` asks :func:`choose_channel`; the payment path reports each call's
outcome to the channel's circuit breaker (:func:`note_call`); ``/readyz`` and the admin
show :func:`breaker_states`. See docs/payments.md#smart-channel-choice.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tuition.channels.base import Channel
from tuition.domain.channel_choice import (
    Breaker,
    BreakerState,
    Candidate,
    Device,
    Strategy,
    device_of,
    method_for,
    rank,
)
from tuition.domain.errors import ChannelError, Conflict, TuitionError
from tuition.domain.risk import Stage
from tuition.domain.wallet import WALLET_CHANNEL
from tuition.store.channel_choice import ChannelChoiceRepository
from tuition.store.risk import RiskRepository
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class ChoicePolicy:
    strategy: Strategy = Strategy.EXPECTED_NET
    window: timedelta = timedelta(days=7)


def choices(uow: UnitOfWork) -> ChannelChoiceRepository:
    return ChannelChoiceRepository(uow.conn)


# The breakers are stored (``channel_breakers``): that row is the truth every process and
# worker reads. So that a successful call, on the main road, costs no query while every
# channel is healthy, each process keeps per engine the channels it last read with
# failures in a row, and reads the rows again when that view is older than
# BREAKER_REFRESH (on the injected clock). A success anywhere then resets a count another
# process made within BREAKER_REFRESH, and every process sees the reset at its next read.
BREAKER_REFRESH = timedelta(seconds=2)


@dataclass(slots=True)
class _View:
    read_at: datetime
    suspects: set[str]


_views: weakref.WeakKeyDictionary[Any, _View] = weakref.WeakKeyDictionary()


def _known(uow: UnitOfWork, breakers: list[BreakerState], at: datetime) -> None:
    _views[uow.engine] = _View(at, {b.channel for b in breakers if b.failures > 0})


async def _suspects(uow: UnitOfWork, at: datetime) -> set[str]:
    """The channels with failures in a row, as last read (again if the view is stale)."""
    view = _views.get(uow.engine)
    if view is None or not view.read_at <= at < view.read_at + BREAKER_REFRESH:
        async with uow.autocommit() as single:
            found = await choices(single).breakers()
        _known(uow, found, at)
        view = _views[uow.engine]
    return view.suspects


async def ranked_channels(
    uow: UnitOfWork,
    channels: Iterable[Channel],
    *,
    policy: ChoicePolicy,
    now: datetime,
    device: Device,
    method: str | None = None,
) -> list[Candidate]:
    """The channels that suit ``device`` (and offer ``method``, if given) and whose breaker
    is not open, best first under ``policy.strategy``."""
    async with uow:
        outcomes = await choices(uow).outcomes(now - policy.window)
        breakers = await choices(uow).breakers()
    _known(uow, breakers, now)
    tripped = {b.channel for b in breakers if b.is_open(now)}
    candidates = []
    for channel in channels:
        if channel.slug == WALLET_CHANNEL or channel.slug in tripped:
            continue
        chosen = method_for(channel.methods, device, method)
        if chosen is None:
            continue
        succeeded, finished = outcomes.get(channel.slug, (0, 0))
        candidates.append(Candidate(channel.slug, succeeded, finished, channel.fee_rate, chosen))
    return rank(candidates, policy.strategy)


async def order_device(uow: UnitOfWork, order_id: str) -> Device:
    """The device of the order's buyer, from the client the platform passed on it."""
    async with uow:
        decision = await RiskRepository(uow.conn).decision_of(order_id=order_id, stage=Stage.ORDER)
    return device_of(None if decision is None else decision.client.get("user_agent"))


async def choose_channel(
    uow: UnitOfWork,
    channels: Iterable[Channel],
    order_id: str,
    *,
    policy: ChoicePolicy,
    now: datetime,
    method: str | None = None,
) -> Candidate:
    """The best channel for the order now; 409 ``no_channel_available`` if none fits."""
    device = await order_device(uow, order_id)
    ranked = await ranked_channels(
        uow, channels, policy=policy, now=now, device=device, method=method
    )
    if not ranked:
        raise Conflict(
            f"no enabled channel suits a {device.value} buyer"
            + (f" with method {method!r}" if method else "")
            + " right now (some may be skipped after repeated failures)",
            code="no_channel_available",
            param="channel",
        )
    return ranked[0]


async def channel_ranking(
    uow: UnitOfWork,
    channels: Iterable[Channel],
    order_id: str,
    *,
    policy: ChoicePolicy,
    now: datetime,
) -> list[str]:
    """The checkout's order of channels for the order: best first, without channels that
    do not suit the buyer's device or whose breaker is open."""
    device = await order_device(uow, order_id)
    ranked = await ranked_channels(uow, channels, policy=policy, now=now, device=device)
    return [c.channel for c in ranked]


async def note_call(
    uow: UnitOfWork,
    channel: str,
    breaker: Breaker,
    *,
    at: datetime,
    error: TuitionError | None = None,
) -> None:
    """Tell the channel's breaker how a call went: a gateway error or timeout counts as a
    failure in a row; a refusal of our request (4xx) or a success does not break it.

    The count is stored, so failures seen by several processes add up, and a success in
    any process closes the breaker for all. A success writes only when the stored rows,
    as this process last read them (at most BREAKER_REFRESH ago), show failures of the
    channel: the main road costs no query while every channel is healthy."""
    if error is None:
        suspects = await _suspects(uow, at)
        if channel not in suspects:
            return  # no failure in a row stored: nothing to reset
        async with uow.autocommit() as single:
            await choices(single).succeeded(channel, at=at)
            await single.commit()
        suspects.discard(channel)
        return
    if not isinstance(error, ChannelError):
        return
    async with uow.autocommit() as single:
        await choices(single).failed(
            channel,
            at=at,
            threshold=breaker.failures,
            cooldown=timedelta(seconds=breaker.cooldown_seconds),
            what=error.code,
        )
        await single.commit()
    view = _views.get(uow.engine)
    if view is not None:
        view.suspects.add(channel)


async def breaker_states(uow: UnitOfWork, *, now: datetime) -> list[dict[str, Any]]:
    async with uow:
        found = await choices(uow).breakers()
    _known(uow, found, now)
    return [
        {
            "channel": b.channel,
            "state": b.state(now),
            "failures": b.failures,
            "opened_until": None if b.opened_until is None else b.opened_until.isoformat(),
            "last_failure": b.last_failure,
        }
        for b in found
    ]
