"""The audit trail's records and their hash chain.

Each sealed record's hash is SHA-256 over canonical JSON of the previous record's hash
and every field of the record, as the ledger's entries (domain/ledger.py): an edited
field, a removed or reordered record, or a cut tail no longer verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tuition.domain.ledger import GENESIS_HASH, canonical_time


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    occurred_at: datetime
    actor_kind: str  # operator, api_key, cli
    actor: str  # the operator's email, the key's id, the CLI user
    action: str  # operator.role_changed, setting.changed, api_key.created, ...
    subject: str  # what changed: an email, a key id, a setting's name
    before: str | None  # canonical JSON
    after: str | None
    ip: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class SealedAudit:
    event: AuditEvent
    chain_index: int
    prev_hash: str
    hash: str


def canonical(value: object) -> str | None:
    """Before/after values as canonical JSON (sorted keys, no whitespace)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_hash(prev_hash: str, event: AuditEvent) -> str:
    payload = {
        "prev_hash": prev_hash,
        "id": event.id,
        "occurred_at": canonical_time(event.occurred_at),
        "actor_kind": event.actor_kind,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "before": event.before,
        "after": event.after,
        "ip": event.ip,
        "request_id": event.request_id,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def verify_audit_chain(
    sealed: Sequence[SealedAudit], *, head_hash: str, head_index: int
) -> list[str]:
    """What is wrong with the chain, in words (empty: intact)."""
    problems = []
    prev = GENESIS_HASH
    for n, record in enumerate(sealed):
        if record.chain_index != n:
            problems.append(
                f"record {record.event.id}: chain index {record.chain_index}, expected {n}"
            )
        if record.prev_hash != prev:
            problems.append(f"record {record.event.id}: the chain breaks before it")
        if audit_hash(record.prev_hash, record.event) != record.hash:
            problems.append(f"record {record.event.id}: its content was changed after sealing")
        prev = record.hash
    if head_index != len(sealed) - 1 or head_hash != prev:
        problems.append(
            f"the chain head ({head_index}) does not match the last record ({len(sealed) - 1})"
        )
    return problems
