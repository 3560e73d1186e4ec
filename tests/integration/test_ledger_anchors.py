"""Ledger anchors on both engines: a signed chain head kept outside the database proves a
rewritten chain, one the chain's own checks accept, is not the chain that was anchored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import delete
from typer.testing import CliRunner

from tuition.cli import app as cli
from tuition.clock import FrozenClock
from tuition.config import get_settings, load_settings
from tuition.domain.ledger import JournalEntry, payment_succeeded_entry
from tuition.services.anchors import (
    AnchorKey,
    AnchorProblemKind,
    anchor_daily,
    anchor_ledger,
    read_anchors,
)
from tuition.services.ledger import seal_ledger, verify_ledger
from tuition.store.tables import journal_entries, ledger_balances, ledger_chain_head, postings
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig


def _private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _payment(n: int, clock: FrozenClock, amount: int = 10000) -> JournalEntry:
    return payment_succeeded_entry(
        payment_id=f"pay_{n}",
        channel="sandbox",
        currency="CNY",
        amount=amount,
        fee=60,
        tax=0,
        creator_shares=[("cre_1", 7000)],
        occurred_at=clock.now() + timedelta(seconds=n),
    )


async def _post_and_seal(uow: UnitOfWork, entries: list[JournalEntry], clock: FrozenClock) -> None:
    async with uow:
        await uow.ledger.post_many(entries, at=clock.now())
        await uow.commit()
    await seal_ledger(uow)


async def _rewrite_everything(uow: UnitOfWork, clock: FrozenClock) -> None:
    """What someone with write access could do: a new, self-consistent chain."""
    async with uow:
        for table in (postings, journal_entries, ledger_balances, ledger_chain_head):
            await uow.conn.execute(delete(table))
        await uow.commit()
    await _post_and_seal(uow, [_payment(n, clock, amount=9000) for n in range(3)], clock)


@pytest.mark.parametrize("key_bytes", [_private_pem(), b"an HMAC secret of some length"])
async def test_a_rewritten_chain_passes_its_own_checks_but_not_its_anchors(
    uow: UnitOfWork, clock: FrozenClock, tmp_path: Path, key_bytes: bytes
) -> None:
    key = AnchorKey.from_bytes(key_bytes)
    await _post_and_seal(uow, [_payment(n, clock) for n in range(3)], clock)
    anchor, path = await anchor_ledger(uow, key, tmp_path, now=clock.now())
    assert (anchor.chain_index, path.parent) == (2, tmp_path)
    anchors, unreadable = read_anchors(tmp_path, key)
    assert unreadable == []
    assert (await verify_ledger(uow, anchors=anchors)).ok

    await _post_and_seal(uow, [_payment(3, clock)], clock)  # the chain goes on: still fine
    assert (await verify_ledger(uow, anchors=anchors)).ok

    await _rewrite_everything(uow, clock)
    assert (await verify_ledger(uow)).ok  # the database alone cannot tell
    report = await verify_ledger(uow, anchors=anchors)
    assert [p.kind for p in report.anchor_problems] == [AnchorProblemKind.ANCHOR_MISMATCH]
    assert report.anchor_problems[0].ref == path.name
    assert not report.ok


async def test_a_chain_cut_short_of_an_anchor_is_reported(
    uow: UnitOfWork, clock: FrozenClock, tmp_path: Path
) -> None:
    key = AnchorKey.from_bytes(_private_pem())
    await _post_and_seal(uow, [_payment(n, clock) for n in range(3)], clock)
    await anchor_ledger(uow, key, tmp_path, now=clock.now())
    async with uow:
        for table in (postings, journal_entries, ledger_balances, ledger_chain_head):
            await uow.conn.execute(delete(table))
        await uow.commit()
    anchors, _ = read_anchors(tmp_path, key)
    report = await verify_ledger(uow, anchors=anchors)
    assert [p.kind for p in report.anchor_problems] == [AnchorProblemKind.ANCHOR_MISSING]


async def test_an_altered_or_foreign_anchor_is_invalid_and_a_public_key_checks_but_never_signs(
    uow: UnitOfWork, clock: FrozenClock, tmp_path: Path
) -> None:
    private_pem = _private_pem()
    key = AnchorKey.from_bytes(private_pem)
    await _post_and_seal(uow, [_payment(1, clock)], clock)
    _, path = await anchor_ledger(uow, key, tmp_path, now=clock.now())
    public = AnchorKey.from_bytes(_public_pem(private_pem))
    assert not public.can_sign
    assert read_anchors(tmp_path, public)[0]  # the public key is enough to check

    forged = json.loads(path.read_text())
    forged["hash"] = "f" * 64
    (tmp_path / "anchor-20990101T000000000000Z-000000000001.json").write_text(json.dumps(forged))
    (tmp_path / "anchor-20990102T000000000000Z-000000000001.json").write_text("{not json")
    other = AnchorKey.from_bytes(_private_pem())
    anchors, problems = read_anchors(tmp_path, public)
    assert len(anchors) == 1
    assert [p.kind for p in problems] == [AnchorProblemKind.ANCHOR_INVALID] * 2
    assert read_anchors(tmp_path, other)[0] == []  # another key's anchors prove nothing


async def test_the_worker_anchors_once_a_day(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock, tmp_path: Path, db_url: str
) -> None:
    key_file = tmp_path / "anchor.pem"
    key_file.write_bytes(_private_pem())
    settings = load_settings(
        database_url=db_url,
        ledger_anchor_dir=str(tmp_path / "anchors"),
        ledger_anchor_key_file=str(key_file),
    )
    await _post_and_seal(uow, [_payment(1, clock)], clock)
    assert await anchor_daily(uow, settings, clock.now()) is not None
    assert await anchor_daily(uow, settings, clock.now() + timedelta(hours=3)) is None
    assert await anchor_daily(uow, settings, clock.now() + timedelta(days=1)) is not None
    assert len(list((tmp_path / "anchors").glob("anchor-*.json"))) == 2

    container = app.state.modes.live
    object.__setattr__(container, "settings", settings)
    worker = Worker(container, WorkerConfig(sweep_interval=timedelta(0)))
    try:
        clock.advance(timedelta(days=2))
        await worker.run_once()
        await worker.run_once()
    finally:
        await worker.close()
    assert len(list((tmp_path / "anchors").glob("anchor-*.json"))) == 3


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    key_file = tmp_path / "anchor.pem"
    key_file.write_bytes(_private_pem())
    monkeypatch.setenv("TUITION_DATABASE_URL", db_url)
    monkeypatch.setenv("TUITION_LEDGER_ANCHOR_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    yield key_file
    get_settings.cache_clear()


async def test_the_anchor_and_verify_commands_prove_the_chain_and_print_no_key(
    cli_env: Path, uow: UnitOfWork, clock: FrozenClock, tmp_path: Path
) -> None:
    await _post_and_seal(uow, [_payment(n, clock) for n in range(2)], clock)
    runner = CliRunner()
    anchors = tmp_path / "anchors"
    made = await _invoke(runner, ["ledger", "anchor", "--dir", str(anchors)])
    assert made.exit_code == 0, made.output
    assert "anchored chain index 1" in made.output
    key_text = cli_env.read_text()
    assert key_text.splitlines()[1] not in made.output
    ok = await _invoke(runner, ["ledger", "verify", "--anchors", str(anchors)])
    assert ok.exit_code == 0, ok.output
    assert "1 anchors" in ok.output

    await _rewrite_everything(uow, clock)
    bad = await _invoke(runner, ["ledger", "verify", "--anchors", str(anchors)])
    assert bad.exit_code == 1, bad.output
    assert "anchor_mismatch" in bad.output


async def _invoke(runner: CliRunner, args: list[str]) -> Result:
    """The command runs its own event loop: run it off this test's."""
    return await asyncio.to_thread(runner.invoke, cli, args)
