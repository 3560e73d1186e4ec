"""Debit agreements (周期扣款 / 委托代扣): the status machine.

::

    pending ──signed (notification or query)──▶ active ──unsigned / terminated──▶ ended
       │                                                                          ▲
       └──────────────── abandoned, declined, or ended before it was seen signed ─┘

``ended`` is terminal: a buyer who wants automatic renewal again signs a new agreement.
The store applies :func:`transition`'s answer with a compare-and-set on the old status.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from tuition.domain.errors import IllegalTransition


class AgreementStatus(StrEnum):
    PENDING = "pending"  # sign page opened, not (yet) signed
    ACTIVE = "active"  # signed: the merchant may charge it
    ENDED = "ended"  # unsigned / terminated, by the buyer or the merchant


A = AgreementStatus
TRANSITIONS: Mapping[AgreementStatus, frozenset[AgreementStatus]] = {
    A.PENDING: frozenset({A.ACTIVE, A.ENDED}),
    A.ACTIVE: frozenset({A.ENDED}),
    A.ENDED: frozenset(),
}


def transition(current: AgreementStatus, target: AgreementStatus) -> AgreementStatus:
    current, target = AgreementStatus(current), AgreementStatus(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"an agreement cannot move from {current} to {target}",
            code="illegal_transition",
            param="status",
        )
    return target
