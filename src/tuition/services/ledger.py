"""Ledger checks and sealing: the use cases behind ``tuition ledger verify``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tuition.domain.ledger import (
    LedgerProblem,
    ProblemKind,
    compare_balances,
    entry_problems,
    verify_chain,
)
from tuition.services.anchors import Anchor, AnchorProblem, check_anchors
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class LedgerReport:
    entries: int
    sealed: int
    accounts: int
    problems: list[LedgerProblem]
    anchors: int = 0  # anchors checked against the chain
    anchor_problems: list[AnchorProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.anchor_problems


async def seal_ledger(uow: UnitOfWork, *, batch: int = 5000) -> int:
    """Chain every entry posted so far; returns how many were sealed now."""
    total = 0
    while True:
        async with uow:
            count = await uow.ledger.seal(limit=batch)
            await uow.commit()
        total += count
        if count < batch:
            return total


async def verify_ledger(uow: UnitOfWork, *, anchors: Sequence[Anchor] = ()) -> LedgerReport:
    """Report unbalanced entries, a broken or edited chain, drifted balances, and any of
    ``anchors`` (signed heads kept outside the database) the chain no longer contains.

    Reads in one transaction so the picture is consistent; writes nothing.
    """
    async with uow:
        head = await uow.ledger.head()
        sealed = await uow.ledger.sealed_entries()
        unsealed = await uow.ledger.unsealed_entries()
        stored = await uow.ledger.balances()
        computed = await uow.ledger.posted_balances()
    problems = verify_chain(sealed, expected_head=head.hash)
    for entry in unsealed:
        problems += [
            LedgerProblem(ProblemKind.UNBALANCED, entry.id, p) for p in entry_problems(entry)
        ]
    if head.chain_index + 1 != len(sealed):
        problems.append(
            LedgerProblem(
                ProblemKind.CHAIN_BREAK,
                "head",
                f"the chain head counts {head.chain_index + 1} sealed entries; found {len(sealed)}",
            )
        )
    problems += compare_balances(stored, computed)
    return LedgerReport(
        entries=len(sealed) + len(unsealed),
        sealed=len(sealed),
        accounts=len(stored.keys() | computed.keys()),
        problems=problems,
        anchors=len(anchors),
        anchor_problems=check_anchors(list(anchors), sealed),
    )
