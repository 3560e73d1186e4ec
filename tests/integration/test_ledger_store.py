"""The ledger store on both engines: append-only, idempotent by source, verifiable."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import get_settings
from tuition.domain.ledger import (
    AccountKind,
    AccountRef,
    JournalEntry,
    ProblemKind,
    payment_succeeded_entry,
)
from tuition.services.ledger import seal_ledger, verify_ledger
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.tables import journal_entries, ledger_balances, postings
from tuition.store.uow import UnitOfWork


def _payment(n: int, clock: FrozenClock) -> JournalEntry:
    return payment_succeeded_entry(
        payment_id=f"pay_{n}",
        channel="sandbox",
        currency="CNY",
        amount=10000,
        fee=60,
        tax=0,
        creator_shares=[("cre_1", 7000)],
        occurred_at=clock.now() + timedelta(seconds=n),
    )


async def _post(uow: UnitOfWork, entries: list[JournalEntry], clock: FrozenClock) -> int:
    async with uow:
        count = await uow.ledger.post_many(entries, at=clock.now())
        await uow.commit()
    return count


async def test_a_payment_posts_the_documented_balanced_entry(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    assert await _post(uow, [_payment(1, clock)], clock) == 1
    async with uow:
        balances = await uow.ledger.balances()
    assert balances == {
        "channel_clearing:CNY:sandbox": 9940,
        "channel_fees:CNY": 60,
        "creator_pending:CNY:cre_1": -7000,
        "platform_revenue:CNY": -3000,
    }
    report = await verify_ledger(uow)
    assert report.ok, report.problems


async def test_reposting_the_same_source_is_a_no_op(uow: UnitOfWork, clock: FrozenClock) -> None:
    entry = _payment(1, clock)
    assert await _post(uow, [entry], clock) == 1
    assert await _post(uow, [entry, _payment(2, clock)], clock) == 1
    async with uow:
        revenue = await uow.ledger.balance(AccountRef(AccountKind.PLATFORM_REVENUE, "CNY"))
    assert revenue == -6000


async def test_concurrent_postings_of_one_source_post_once(
    engine: AsyncEngine, clock: FrozenClock
) -> None:
    entry = _payment(7, clock)
    counts = await asyncio.gather(*(_post(UnitOfWork(engine), [entry], clock) for _ in range(8)))
    assert sorted(counts) == [0] * 7 + [1]
    assert (await verify_ledger(UnitOfWork(engine))).ok


async def test_sealing_chains_every_entry_and_verify_passes(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    await _post(uow, [_payment(n, clock) for n in range(5)], clock)
    assert await seal_ledger(uow) == 5
    await _post(uow, [_payment(n, clock) for n in range(5, 8)], clock)
    assert await seal_ledger(uow) == 3
    assert await seal_ledger(uow) == 0
    report = await verify_ledger(uow)
    assert (report.entries, report.sealed, report.ok) == (8, 8, True)


async def _tampered(uow: UnitOfWork, clock: FrozenClock, statement: object) -> set[ProblemKind]:
    await _post(uow, [_payment(n, clock) for n in range(4)], clock)
    await seal_ledger(uow)
    async with uow:
        await uow.conn.execute(statement)  # type: ignore[call-overload]
        await uow.commit()
    report = await verify_ledger(uow)
    assert not report.ok
    return {p.kind for p in report.problems}


async def test_verify_detects_an_edited_posting(uow: UnitOfWork, clock: FrozenClock) -> None:
    second = select(journal_entries.c.seq).where(journal_entries.c.source == "payment:pay_1")
    kinds = await _tampered(
        uow,
        clock,
        update(postings)
        .where(postings.c.entry_seq == second.scalar_subquery(), postings.c.line == 0)
        .values(amount=20000),
    )
    assert ProblemKind.HASH_MISMATCH in kinds
    assert ProblemKind.UNBALANCED in kinds


async def test_verify_detects_an_edited_description(uow: UnitOfWork, clock: FrozenClock) -> None:
    kinds = await _tampered(
        uow,
        clock,
        update(journal_entries)
        .where(journal_entries.c.source == "payment:pay_2")
        .values(description="nothing to see"),
    )
    assert kinds == {ProblemKind.HASH_MISMATCH}


async def test_verify_detects_a_deleted_entry(uow: UnitOfWork, clock: FrozenClock) -> None:
    await _post(uow, [_payment(n, clock) for n in range(4)], clock)
    await seal_ledger(uow)
    async with uow:
        seq = (
            await uow.conn.execute(
                select(journal_entries.c.seq).where(journal_entries.c.source == "payment:pay_1")
            )
        ).scalar_one()
        await uow.conn.execute(delete(postings).where(postings.c.entry_seq == seq))
        await uow.conn.execute(delete(journal_entries).where(journal_entries.c.seq == seq))
        await uow.commit()
    report = await verify_ledger(uow)
    kinds = {p.kind for p in report.problems}
    assert ProblemKind.CHAIN_BREAK in kinds
    assert ProblemKind.BALANCE_MISMATCH in kinds


async def test_verify_detects_a_drifted_balance(uow: UnitOfWork, clock: FrozenClock) -> None:
    kinds = await _tampered(
        uow,
        clock,
        update(ledger_balances)
        .where(ledger_balances.c.account_key == "creator_pending:CNY:cre_1")
        .values(balance=0),
    )
    assert kinds == {ProblemKind.BALANCE_MISMATCH}


def test_ledger_verify_command_exits_non_zero_after_an_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("TUITION_DATABASE_URL", url)
    get_settings.cache_clear()

    async def prepare(edit: bool) -> None:
        engine = create_engine(url)
        try:
            if not edit:
                await schema.upgrade(engine)
                await _post(UnitOfWork(engine), [_payment(n, clock) for n in range(3)], clock)
            else:
                async with engine.begin() as conn:
                    await conn.execute(update(postings).values(amount=postings.c.amount * 2))
        finally:
            await engine.dispose()

    runner = CliRunner()
    try:
        asyncio.run(prepare(edit=False))
        ok = runner.invoke(cli, ["ledger", "verify"])
        assert ok.exit_code == 0, ok.output
        assert "ledger OK" in ok.output
        asyncio.run(prepare(edit=True))
        bad = runner.invoke(cli, ["ledger", "verify"])
        assert bad.exit_code == 1
        assert "hash_mismatch" in bad.output
    finally:
        get_settings.cache_clear()


async def test_a_batch_that_repeats_a_source_posts_it_once(
    uow: UnitOfWork, clock: FrozenClock
) -> None:
    entry = _payment(1, clock)
    rebuilt = _payment(1, clock)  # same source, another entry id
    assert await _post(uow, [entry, _payment(2, clock), rebuilt, entry], clock) == 2
    assert await seal_ledger(uow) == 2
    report = await verify_ledger(uow)
    assert (report.entries, report.ok) == (2, True)
