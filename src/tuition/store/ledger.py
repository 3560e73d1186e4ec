"""Ledger repository: append-only journal entries, postings, sharded balances, the chain.

Posting never locks a house account: a posting adds to one of ``SHARDS`` balance rows
picked at random for busy house accounts (revenue, clearing, fees, tax, refunds), and
the hash chain is sealed afterwards by one sealer (:meth:`LedgerRepository.seal`), so a
payment's transaction touches no row that every other payment also touches.

On PostgreSQL a batch of any size is posted in one statement (one round trip): the
entries, accounts, postings and balance deltas travel as arrays and are unpacked with
``unnest`` in data-modifying CTEs (see ``_POST_SQL``). SQLite takes four statements.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Integer, column, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.ledger import (
    GENESIS_HASH,
    AccountKind,
    AccountRef,
    JournalEntry,
    Posting,
    SealedEntry,
    seal_all,
)
from tuition.store.db import dialect_insert, insert_ignoring_conflicts
from tuition.store.direct import Direct
from tuition.store.tables import (
    journal_entries,
    ledger_accounts,
    ledger_balances,
    ledger_chain_head,
    postings,
)

SHARDS = 16
_HOT_KINDS = frozenset(
    {
        AccountKind.PLATFORM_REVENUE,
        AccountKind.CHANNEL_CLEARING,
        AccountKind.CHANNEL_FEES,
        AccountKind.TAX_PAYABLE,
        AccountKind.REFUNDS,
    }
)


def _shard(account: AccountRef) -> int:
    """A random balance shard for busy house accounts, shard 0 for all others."""
    return random.randrange(SHARDS) if account.kind in _HOT_KINDS else 0  # noqa: S311


# One round trip for a whole batch. Order matters for locks, not only for foreign keys:
# new accounts are inserted before any balance row is touched (the one-time filter on
# ``accounts_done``), and balance rows are upserted in (account, shard) order, so two
# batches never wait on each other in opposite orders. Postings and balance deltas join
# the entries actually inserted, so a repeated source adds nothing.
_POST_SQL = Direct(
    text(
        """
WITH new_accounts AS (
    INSERT INTO ledger_accounts (key, kind, type, currency, qualifier, created_at)
    SELECT a.key, a.kind, a.type, a.currency, a.qualifier, :at
    FROM unnest(
        CAST(:account_keys AS VARCHAR[]), CAST(:account_kinds AS VARCHAR[]),
        CAST(:account_types AS VARCHAR[]), CAST(:account_currencies AS VARCHAR[]),
        CAST(:account_qualifiers AS VARCHAR[])
    ) AS a(key, kind, type, currency, qualifier)
    ORDER BY a.key
    ON CONFLICT DO NOTHING
    RETURNING 1
),
new_entries AS (
    INSERT INTO journal_entries (id, source, description, occurred_at, created_at)
    SELECT e.id, e.source, e.description, e.occurred_at, :at
    FROM unnest(
        CAST(:entry_ids AS VARCHAR[]), CAST(:sources AS VARCHAR[]),
        CAST(:descriptions AS VARCHAR[]), CAST(:occurred AS TIMESTAMPTZ[])
    ) AS e(id, source, description, occurred_at)
    WHERE (SELECT count(*) FROM new_accounts) >= 0
    ON CONFLICT DO NOTHING
    RETURNING seq, source
),
lines AS (
    SELECT l.source, l.line, l.account_key, l.amount, l.shard
    FROM unnest(
        CAST(:line_sources AS VARCHAR[]), CAST(:line_numbers AS INTEGER[]),
        CAST(:line_accounts AS VARCHAR[]), CAST(:line_amounts AS BIGINT[]),
        CAST(:line_shards AS INTEGER[])
    ) AS l(source, line, account_key, amount, shard)
),
new_postings AS (
    INSERT INTO postings (entry_seq, line, account_key, amount)
    SELECT n.seq, l.line, l.account_key, l.amount
    FROM lines AS l JOIN new_entries AS n ON n.source = l.source
),
new_balances AS (
    INSERT INTO ledger_balances AS b (account_key, shard, balance)
    SELECT l.account_key, l.shard, sum(l.amount)
    FROM lines AS l JOIN new_entries AS n ON n.source = l.source
    GROUP BY l.account_key, l.shard
    ORDER BY l.account_key, l.shard
    ON CONFLICT (account_key, shard) DO UPDATE SET balance = b.balance + excluded.balance
)
SELECT count(*) FROM new_entries
"""
    ).columns(column("posted", Integer))
)


# Seals a whole batch in one round trip instead of one UPDATE per entry.
_SEAL_SQL = text(
    """
UPDATE journal_entries AS j
SET chain_index = v.chain_index, prev_hash = v.prev_hash, hash = v.hash
FROM unnest(
    CAST(:seqs AS BIGINT[]), CAST(:indexes AS BIGINT[]),
    CAST(:prevs AS VARCHAR[]), CAST(:hashes AS VARCHAR[])
) AS v(seq, chain_index, prev_hash, hash)
WHERE j.seq = v.seq
"""
)


@dataclass(frozen=True, slots=True)
class ChainHead:
    chain_index: int
    hash: str


class LedgerRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def post(self, entry: JournalEntry, *, at: datetime) -> bool:
        """Append ``entry``; False (and nothing written) if its source was posted before."""
        return await self.post_many([entry], at=at) == 1

    async def post_many(self, entries: Sequence[JournalEntry], *, at: datetime) -> int:
        """Append many entries in one round trip (PostgreSQL); returns how many were new.

        Entries whose ``source`` is already in the journal are skipped (UNIQUE source), so
        a retried batch posts nothing twice; of entries repeating a source within the
        batch, the first is posted.
        """
        first: dict[str, JournalEntry] = {}
        for entry in entries:
            first.setdefault(entry.source, entry)
        unique = list(first.values())
        if not unique:
            return 0
        if self.conn.dialect.name == "postgresql":
            return await self._post_in_one_statement(unique, at=at)
        return await self._post_in_steps(unique, at=at)

    async def _post_in_one_statement(self, entries: Sequence[JournalEntry], *, at: datetime) -> int:
        accounts = sorted(
            {p.account.key: p.account for e in entries for p in e.postings}.values(),
            key=lambda a: a.key,
        )
        lines = [(e.source, n, p) for e in entries for n, p in enumerate(e.postings)]
        posted = await _POST_SQL.first(
            self.conn,
            {
                "at": at.astimezone(UTC),
                "entry_ids": [e.id for e in entries],
                "sources": [e.source for e in entries],
                "descriptions": [e.description for e in entries],
                "occurred": [e.occurred_at.astimezone(UTC) for e in entries],
                "account_keys": [a.key for a in accounts],
                "account_kinds": [a.kind.value for a in accounts],
                "account_types": [a.account_type.value for a in accounts],
                "account_currencies": [a.currency for a in accounts],
                "account_qualifiers": [a.qualifier for a in accounts],
                "line_sources": [source for source, _, _ in lines],
                "line_numbers": [n for _, n, _ in lines],
                "line_accounts": [p.account.key for _, _, p in lines],
                "line_amounts": [p.amount for _, _, p in lines],
                "line_shards": [_shard(p.account) for _, _, p in lines],
            },
        )
        assert posted is not None
        return int(posted["posted"])

    async def _post_in_steps(self, entries: Sequence[JournalEntry], *, at: datetime) -> int:
        rows = await self.conn.execute(
            # Any conflict means "already posted": the same entry retried has the same id
            # and source, and a rebuilt one the same source.
            insert_ignoring_conflicts(self.conn, journal_entries).returning(
                journal_entries.c.seq, journal_entries.c.source
            ),
            [
                {
                    "id": e.id,
                    "source": e.source,
                    "description": e.description,
                    "occurred_at": e.occurred_at,
                    "created_at": at,
                }
                for e in entries
            ],
        )
        seq_by_source = {r.source: r.seq for r in rows}
        fresh = [e for e in entries if e.source in seq_by_source]
        if not fresh:
            return 0
        accounts = {p.account.key: p.account for e in fresh for p in e.postings}
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, ledger_accounts),
            [
                {
                    "key": a.key,
                    "kind": a.kind.value,
                    "type": a.account_type.value,
                    "currency": a.currency,
                    "qualifier": a.qualifier,
                    "created_at": at,
                }
                for a in sorted(accounts.values(), key=lambda a: a.key)
            ],
        )
        await self.conn.execute(
            insert(postings),
            [
                {
                    "entry_seq": seq_by_source[e.source],
                    "line": n,
                    "account_key": p.account.key,
                    "amount": p.amount,
                }
                for e in fresh
                for n, p in enumerate(e.postings)
            ],
        )
        await self._add_to_balances(fresh)
        return len(fresh)

    async def _add_to_balances(self, entries: Sequence[JournalEntry]) -> None:
        deltas: dict[tuple[str, int], int] = defaultdict(int)
        for entry in entries:
            for p in entry.postings:
                deltas[(p.account.key, _shard(p.account))] += p.amount
        stmt = dialect_insert(self.conn, ledger_balances)
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_key", "shard"],
            set_={"balance": ledger_balances.c.balance + stmt.excluded.balance},
        )
        # Sorted, so concurrent transactions take row locks in one order: no deadlocks.
        await self.conn.execute(
            stmt,
            [
                {"account_key": key, "shard": shard, "balance": amount}
                for (key, shard), amount in sorted(deltas.items())
            ],
        )

    async def entry_by_source(self, source: str) -> JournalEntry | None:
        row = (
            await self.conn.execute(
                select(journal_entries).where(journal_entries.c.source == source)
            )
        ).first()
        if row is None:
            return None
        return (await self._with_postings([row._mapping]))[0]

    async def entries_with_source_prefix(self, prefix: str) -> list[JournalEntry]:
        rows = await self.conn.execute(
            select(journal_entries)
            .where(journal_entries.c.source.startswith(prefix, autoescape=True))
            .order_by(journal_entries.c.seq)
        )
        return await self._with_postings([r._mapping for r in rows])

    async def balance(self, account: AccountRef) -> int:
        total = await self.conn.execute(
            select(func.coalesce(func.sum(ledger_balances.c.balance), 0)).where(
                ledger_balances.c.account_key == account.key
            )
        )
        return int(total.scalar_one())

    async def balances(self) -> dict[str, int]:
        """Stored balance per account (the sum of its shards)."""
        rows = await self.conn.execute(
            select(ledger_balances.c.account_key, func.sum(ledger_balances.c.balance)).group_by(
                ledger_balances.c.account_key
            )
        )
        return {key: int(total) for key, total in rows}

    async def posted_balances(self) -> dict[str, int]:
        """Balance per account recomputed from every posting."""
        rows = await self.conn.execute(
            select(postings.c.account_key, func.sum(postings.c.amount)).group_by(
                postings.c.account_key
            )
        )
        return {key: int(total) for key, total in rows}

    # --- the hash chain -----------------------------------------------------------------

    async def head(self) -> ChainHead:
        row = (
            await self.conn.execute(select(ledger_chain_head).where(ledger_chain_head.c.id == 1))
        ).first()
        return ChainHead(-1, GENESIS_HASH) if row is None else ChainHead(row.chain_index, row.hash)

    async def seal(self, *, limit: int = 5000) -> int:
        """Chain up to ``limit`` unsealed entries after the head, in commit-visible order.

        The sealer claims the head row first, so two sealers run one after the other;
        payments never wait on it.
        """
        head = await self._claim_head()
        rows = await self.conn.execute(
            select(journal_entries)
            .where(journal_entries.c.chain_index.is_(None))
            .order_by(journal_entries.c.seq)
            .limit(limit)
        )
        mappings = [r._mapping for r in rows]
        if not mappings:
            return 0
        entries = await self._with_postings(mappings)
        sealed = seal_all(entries, head.hash)
        links = [
            (row["seq"], head.chain_index + n, s.prev_hash, s.hash)
            for n, (row, s) in enumerate(zip(mappings, sealed, strict=True), start=1)
        ]
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(
                _SEAL_SQL,
                {
                    "seqs": [seq for seq, _, _, _ in links],
                    "indexes": [index for _, index, _, _ in links],
                    "prevs": [prev for _, _, prev, _ in links],
                    "hashes": [digest for _, _, _, digest in links],
                },
            )
        else:
            for seq, index, prev, digest in links:
                await self.conn.execute(
                    update(journal_entries)
                    .where(journal_entries.c.seq == seq)
                    .values(chain_index=index, prev_hash=prev, hash=digest)
                )
        await self.conn.execute(
            update(ledger_chain_head)
            .where(ledger_chain_head.c.id == 1)
            .values(chain_index=head.chain_index + len(sealed), hash=sealed[-1].hash)
        )
        return len(sealed)

    async def _claim_head(self) -> ChainHead:
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, ledger_chain_head).values(
                id=1, chain_index=-1, hash=GENESIS_HASH
            )
        )
        query = select(ledger_chain_head).where(ledger_chain_head.c.id == 1)
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self.conn.execute(query)).one()
        return ChainHead(row.chain_index, row.hash)

    async def sealed_entries(self) -> list[SealedEntry]:
        rows = await self.conn.execute(
            select(journal_entries)
            .where(journal_entries.c.chain_index.is_not(None))
            .order_by(journal_entries.c.chain_index)
        )
        mappings = [r._mapping for r in rows]
        entries = await self._with_postings(mappings)
        return [
            SealedEntry(entry, row["prev_hash"], row["hash"])
            for row, entry in zip(mappings, entries, strict=True)
        ]

    async def unsealed_entries(self) -> list[JournalEntry]:
        rows = await self.conn.execute(
            select(journal_entries)
            .where(journal_entries.c.chain_index.is_(None))
            .order_by(journal_entries.c.seq)
        )
        return await self._with_postings([r._mapping for r in rows])

    async def _with_postings(self, rows: Sequence[object]) -> list[JournalEntry]:
        seqs = [r["seq"] for r in rows]  # type: ignore[index]
        by_seq: dict[int, list[Posting]] = defaultdict(list)
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            result = await self.conn.execute(
                select(postings.c.entry_seq, postings.c.account_key, postings.c.amount)
                .where(postings.c.entry_seq.in_(chunk))
                .order_by(postings.c.entry_seq, postings.c.line)
            )
            for seq, key, amount in result:
                by_seq[seq].append(Posting(AccountRef.parse(key), int(amount)))
        return [
            JournalEntry(
                id=r["id"],  # type: ignore[index]
                source=r["source"],  # type: ignore[index]
                description=r["description"],  # type: ignore[index]
                postings=tuple(by_seq[r["seq"]]),  # type: ignore[index]
                occurred_at=r["occurred_at"],  # type: ignore[index]
            )
            for r in rows
        ]
