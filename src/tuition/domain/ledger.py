"""Double-entry ledger rules: accounts, balanced journal entries, posting rules, hash chain.

Sign convention
    A posting is a signed ``int`` in minor units: **debit positive, credit negative**.
    Every entry's postings sum to zero per currency. An account's balance is the plain sum
    of its postings. For display, asset and expense accounts are debit-normal (shown as
    is) and liability and revenue accounts credit-normal (shown negated, see
    :func:`display_balance`), so a creator owed 70.00 has balance -7000 and shows 70.00.

Accounts
    Typed and per currency, named by :class:`AccountRef` with a stable key
    ``kind:CURRENCY[:qualifier]`` (``creator_payable:CNY:cre_123``, ``platform_revenue:CNY``).
    ``refunds`` is a *contra-revenue* account: typed revenue, but it carries a debit
    balance, so it displays negative and reduces net revenue when revenue accounts are
    summed, while gross revenue stays visible in ``platform_revenue``.

Posting rules (payment of 100.00 CNY, 0.6 % fee, 70 % creator share, no tax)::

    channel_clearing:CNY:alipay   +10000   gross received through the channel
    channel_fees:CNY                 +60   the channel's fee, an expense ...
    channel_clearing:CNY:alipay      -60   ... which it keeps (clearing nets 99.40)
    creator_pending:CNY:cre_1      -7000   owed to the creator, in its refund hold
    platform_revenue:CNY           -3000   amount - tax - creator shares (gross of fee)

The platform's net, revenue 30.00 - fee expense 0.60 = 29.40, is ``net_to_platform``.
Crediting revenue with 29.40 *and* debiting the fee would leave 0.60 unbalanced (or, with
clearing netted, count the fee twice), so revenue is booked gross and the fee separately.

A refund credits clearing with the refunded amount and debits the payment's credit
postings in proportion to what is still unrefunded (largest remainder), with revenue
reversed into ``refunds``. Channels are assumed to keep their fee unless the caller says
how much came back (``fee_returned``). Mistakes are fixed by :func:`reversal_entry`.

Hash chain: each entry's hash is SHA-256 over canonical JSON of the previous hash and the
entry (see :func:`entry_hash`); :func:`verify_chain` reports problems instead of raising
so ``tuition ledger verify`` can list them all.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import MAX_AMOUNT, allocate, allocate_by_ratios, get_currency

GENESIS_HASH = "0" * 64


class UnbalancedEntry(TuitionError):
    """A journal entry broke double-entry rules: a bug in a posting rule, never user input."""

    default_code = "ledger_unbalanced"


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"

    @property
    def debit_normal(self) -> bool:
        return self in (AccountType.ASSET, AccountType.EXPENSE)


def display_balance(account_type: AccountType, balance: int) -> int:
    """A balance as finance reads it: debit-normal as is, credit-normal negated."""
    return balance if account_type.debit_normal else -balance


class AccountKind(StrEnum):
    CHANNEL_CLEARING = "channel_clearing"  # receivable from a channel; qualifier: channel slug
    CHANNEL_FEES = "channel_fees"
    PLATFORM_REVENUE = "platform_revenue"
    CREATOR_PAYABLE = "creator_payable"  # qualifier: payee id; earnings available to pay out
    CREATOR_PENDING = "creator_pending"  # qualifier: payee id; earnings in their refund hold
    CREATOR_IN_PAYOUT = "creator_in_payout"  # qualifier: payee id; held for a payout under way
    CUSTOMER_WALLET = "customer_wallet"  # qualifier: customer id
    TAX_PAYABLE = "tax_payable"
    REFUNDS = "refunds"  # contra-revenue
    CASH = "cash"  # the platform's bank: settlements in, payouts out
    WALLET_ADJUSTMENTS = "wallet_adjustments"  # operator credits (a cost) and debits
    FX_CONVERSION = "fx_conversion"  # per currency: the position left by conversions

    @property
    def account_type(self) -> AccountType:
        return _KIND_TYPES[self]

    @property
    def qualified(self) -> bool:
        """Whether accounts of this kind exist once per channel, creator or customer."""
        return self in _QUALIFIED


_KIND_TYPES = {
    AccountKind.CHANNEL_CLEARING: AccountType.ASSET,
    AccountKind.CHANNEL_FEES: AccountType.EXPENSE,
    AccountKind.PLATFORM_REVENUE: AccountType.REVENUE,
    AccountKind.CREATOR_PAYABLE: AccountType.LIABILITY,
    AccountKind.CREATOR_PENDING: AccountType.LIABILITY,
    AccountKind.CREATOR_IN_PAYOUT: AccountType.LIABILITY,
    AccountKind.CUSTOMER_WALLET: AccountType.LIABILITY,
    AccountKind.TAX_PAYABLE: AccountType.LIABILITY,
    AccountKind.REFUNDS: AccountType.REVENUE,
    AccountKind.CASH: AccountType.ASSET,
    AccountKind.WALLET_ADJUSTMENTS: AccountType.EXPENSE,
    AccountKind.FX_CONVERSION: AccountType.ASSET,
}
_QUALIFIED = frozenset(
    {
        AccountKind.CHANNEL_CLEARING,
        AccountKind.CREATOR_PAYABLE,
        AccountKind.CREATOR_PENDING,
        AccountKind.CREATOR_IN_PAYOUT,
        AccountKind.CUSTOMER_WALLET,
    }
)


@dataclass(frozen=True, slots=True)
class AccountRef:
    kind: AccountKind
    currency: str
    qualifier: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AccountKind(self.kind))
        get_currency(self.currency)
        if not isinstance(self.qualifier, str) or self.qualifier != self.qualifier.strip():
            raise ValidationFailed("account qualifier must be a trimmed string", param="qualifier")
        if bool(self.qualifier) != self.kind.qualified:
            need = "needs" if self.kind.qualified else "takes no"
            raise ValidationFailed(f"{self.kind} account {need} a qualifier", param="qualifier")

    @property
    def key(self) -> str:
        """Stable string name, e.g. ``creator_payable:CNY:cre_123`` or ``cash:CNY``."""
        base = f"{self.kind}:{self.currency}"
        return f"{base}:{self.qualifier}" if self.qualifier else base

    @property
    def account_type(self) -> AccountType:
        return self.kind.account_type

    @classmethod
    def parse(cls, key: str) -> AccountRef:
        kind, _, rest = key.partition(":")
        currency, _, qualifier = rest.partition(":")
        try:
            return cls(AccountKind(kind), currency, qualifier)
        except ValueError as exc:
            raise ValidationFailed(f"not an account key: {key!r}", param="account") from exc


@dataclass(frozen=True, slots=True)
class Posting:
    account: AccountRef
    amount: int  # minor units, debit positive, credit negative


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: str
    source: str  # what caused the entry; UNIQUE in the store, so re-posting is a no-op
    description: str
    postings: tuple[Posting, ...]
    occurred_at: datetime


def payment_source(payment_id: str) -> str:
    return f"payment:{payment_id}"


def refund_source(refund_id: str) -> str:
    return f"refund:{refund_id}"


def entry_problems(entry: JournalEntry) -> list[str]:
    """Why ``entry`` breaks double-entry rules; empty when it is sound."""
    problems: list[str] = []
    if len(entry.postings) < 2:
        problems.append("an entry needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for posting in entry.postings:
        amount = posting.amount
        if type(amount) is not int or amount == 0 or abs(amount) > MAX_AMOUNT:
            problems.append(f"{posting.account.key}: amount {amount!r} is not a non-zero int")
        else:
            totals[posting.account.currency] += amount
    problems += [f"{cur} postings sum to {total}" for cur, total in totals.items() if total]
    return problems


def build_entry(
    source: str,
    description: str,
    postings: Iterable[Posting],
    occurred_at: datetime,
    *,
    entry_id: str | None = None,
) -> JournalEntry:
    """A validated entry; raises UnbalancedEntry when the postings break the rules."""
    if not isinstance(source, str) or not source:
        raise ValidationFailed("entry source must be a non-empty string", param="source")
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise ValidationFailed("occurred_at must be timezone-aware", param="occurred_at")
    entry = JournalEntry(
        id=entry_id or new_id(Prefix.JOURNAL_ENTRY),
        source=source,
        description=description,
        postings=tuple(postings),
        occurred_at=occurred_at,
    )
    if problems := entry_problems(entry):
        raise UnbalancedEntry(f"entry {source!r} rejected: " + "; ".join(problems))
    return entry


def creator_shares(line_amounts: Sequence[int], rates: Sequence[Decimal]) -> list[int]:
    """Each line's creator share: the line split ``[rate, 1 - rate]`` by largest remainder.

    ``line_amounts`` are net of tax. Splitting each line between creator and platform with
    :func:`allocate_by_ratios` keeps both parts whole and their sum exactly the line.
    """
    if len(line_amounts) != len(rates):
        raise ValidationFailed("one rate per line is required", param="rates")
    shares = []
    for amount, rate in zip(line_amounts, rates, strict=True):
        if not isinstance(rate, Decimal) or not Decimal(0) <= rate <= Decimal(1):
            raise ValidationFailed(f"creator rate {rate!r} must be within [0, 1]", param="rates")
        if type(amount) is not int or amount < 0:
            raise ValidationFailed("line amounts must be non-negative ints", param="amount")
        shares.append(allocate_by_ratios(amount, [rate, 1 - rate])[0])
    return shares


def payment_succeeded_entry(
    *,
    payment_id: str,
    channel: str,
    currency: str,
    amount: int,
    fee: int,
    tax: int,
    creator_shares: Sequence[tuple[str, int]],
    occurred_at: datetime,
    entry_id: str | None = None,
    wallet_credits: Sequence[tuple[str, int]] = (),
    paid_from_wallet: str | None = None,
) -> JournalEntry:
    """Post a captured payment (see the module docstring for the shape).

    Revenue is ``amount - tax - sum(creator shares) - sum(wallet credits)``: a top-up is
    a liability to the customer (``wallet_credits``: customer, amount), never revenue; a
    pack that credits more than it earns makes the difference a revenue debit (a
    promotional cost). Shares of one creator are merged; zero amounts are left out.
    ``paid_from_wallet`` names the customer whose balance paid, in place of a channel's
    clearing account (and no fee).
    """
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("payment amount must be a positive int", param="amount")
    merged: dict[str, int] = {}
    for creator_id, share in creator_shares:
        if type(share) is not int or share < 0:
            raise ValidationFailed("creator shares must be non-negative ints", param="shares")
        merged[creator_id] = merged.get(creator_id, 0) + share
    for value, param in ((fee, "fee"), (tax, "tax")):
        if type(value) is not int or not 0 <= value <= amount:
            raise ValidationFailed(f"{param} must be an int within [0, amount]", param=param)
    if amount - tax - sum(merged.values()) < 0:
        raise ValidationFailed("tax and creator shares exceed the amount", param="shares")
    credits: dict[str, int] = defaultdict(int)
    for customer_id, credit in wallet_credits:
        if type(credit) is not int or credit <= 0:
            raise ValidationFailed("wallet credits must be positive ints", param="wallet")
        credits[customer_id] += credit
    revenue = amount - tax - sum(merged.values()) - sum(credits.values())
    clearing = (
        AccountRef(AccountKind.CHANNEL_CLEARING, currency, channel)
        if paid_from_wallet is None
        else AccountRef(AccountKind.CUSTOMER_WALLET, currency, paid_from_wallet)
    )
    lines = [
        (clearing, amount),
        (AccountRef(AccountKind.CHANNEL_FEES, currency), fee),
        (clearing, -fee),
        # Earned, but pending until the refund hold ends (domain/earnings.py releases it).
        *((AccountRef(AccountKind.CREATOR_PENDING, currency, c), -s) for c, s in merged.items()),
        *((AccountRef(AccountKind.CUSTOMER_WALLET, currency, c), -v) for c, v in credits.items()),
        (AccountRef(AccountKind.TAX_PAYABLE, currency), -tax),
        (AccountRef(AccountKind.PLATFORM_REVENUE, currency), -revenue),
    ]
    return build_entry(
        payment_source(payment_id),
        f"payment {payment_id} succeeded via {channel}",
        (Posting(account, value) for account, value in lines if value),
        occurred_at,
        entry_id=entry_id,
    )


def funding_account(original: JournalEntry) -> AccountRef:
    """The account a payment entry was paid from: the channel's clearing account, or the
    customer's wallet for a payment from balance (its one debit of either kind)."""
    funding = [
        p.account
        for p in original.postings
        if p.amount > 0
        and p.account.kind in (AccountKind.CHANNEL_CLEARING, AccountKind.CUSTOMER_WALLET)
    ]
    if len(funding) != 1:
        raise ValidationFailed("original is not a payment entry", param="original")
    return funding[0]


def _refund_target(account: AccountRef) -> AccountRef:
    if account.kind is AccountKind.PLATFORM_REVENUE:
        return AccountRef(AccountKind.REFUNDS, account.currency)
    return account


def refund_entry(
    original: JournalEntry,
    *,
    refund_id: str,
    amount: int,
    occurred_at: datetime,
    prior_refunds: Sequence[JournalEntry] = (),
    fee_returned: int = 0,
    entry_id: str | None = None,
) -> JournalEntry:
    """Post a (partial) refund of the payment posted as ``original``.

    ``prior_refunds`` are the entries already posted against this payment (earlier
    refunds, and reversals of them). The refund is split over what each credit account
    still holds from the payment, by largest remainder, so any sequence of refunds never
    takes more from an account than the payment gave it and a full refund returns every
    account exactly. ``fee_returned`` is the part of the fee the channel gave back.
    """
    clearing = funding_account(original)
    fee_account = AccountRef(AccountKind.CHANNEL_FEES, clearing.currency)
    remaining: dict[AccountRef, int] = defaultdict(int)
    fee_left = 0
    for posting in original.postings:
        if posting.account.kind is AccountKind.CHANNEL_FEES:
            fee_left += posting.amount
        elif posting.account != clearing:
            remaining[_refund_target(posting.account)] -= posting.amount
    for prior in prior_refunds:
        for posting in prior.postings:
            if posting.account == fee_account:
                fee_left += posting.amount
            elif posting.account in remaining:
                remaining[posting.account] -= posting.amount
            elif posting.account != clearing:
                raise ValidationFailed(f"{prior.source} is not a refund of this payment")
    if any(value < 0 for value in remaining.values()) or fee_left < 0:
        raise ValidationFailed("prior refunds exceed the payment", param="prior_refunds")
    refundable = sum(remaining.values())
    if type(amount) is not int or not 0 < amount <= refundable:
        raise ValidationFailed(f"refund amount must be within 1..{refundable}", param="amount")
    if type(fee_returned) is not int or not 0 <= fee_returned <= fee_left:
        raise ValidationFailed(f"fee_returned must be within 0..{fee_left}", param="fee_returned")
    accounts = list(remaining)
    parts = allocate(amount, [remaining[account] for account in accounts])
    lines = [
        (clearing, -amount),
        *zip(accounts, parts, strict=True),
        (fee_account, -fee_returned),
        (clearing, fee_returned),
    ]
    return build_entry(
        refund_source(refund_id),
        f"refund {refund_id} of {original.source}",
        (Posting(account, value) for account, value in lines if value),
        occurred_at,
        entry_id=entry_id,
    )


def reversal_entry(
    original: JournalEntry,
    source: str,
    *,
    occurred_at: datetime,
    description: str | None = None,
    entry_id: str | None = None,
) -> JournalEntry:
    """An entry that cancels ``original`` by negating every posting."""
    return build_entry(
        source,
        description or f"reversal of {original.source}",
        (Posting(p.account, -p.amount) for p in original.postings),
        occurred_at,
        entry_id=entry_id,
    )


def canonical_time(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds; a naive time (SQLite round trip) is taken as UTC."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, entry: JournalEntry) -> str:
    """SHA-256 hex of canonical JSON: sorted keys, no whitespace, ints as ints.

    Covers ``prev_hash`` and every field of the entry, postings sorted by (account key,
    amount) so the row order the store returns does not matter.
    """
    payload = {
        "prev_hash": prev_hash,
        "id": entry.id,
        "source": entry.source,
        "description": entry.description,
        "occurred_at": canonical_time(entry.occurred_at),
        "postings": [
            {"account": key, "amount": amount}
            for key, amount in sorted((p.account.key, p.amount) for p in entry.postings)
        ],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """An entry as stored in the chain: with the previous entry's hash and its own."""

    entry: JournalEntry
    prev_hash: str
    hash: str


def seal(entry: JournalEntry, prev_hash: str) -> SealedEntry:
    return SealedEntry(entry, prev_hash, entry_hash(prev_hash, entry))


def seal_all(entries: Iterable[JournalEntry], prev_hash: str = GENESIS_HASH) -> list[SealedEntry]:
    """Chain ``entries`` in order after ``prev_hash`` (a batch appended to the ledger)."""
    sealed = []
    for entry in entries:
        sealed.append(seal(entry, prev_hash))
        prev_hash = sealed[-1].hash
    return sealed


class ProblemKind(StrEnum):
    UNBALANCED = "unbalanced"
    HASH_MISMATCH = "hash_mismatch"
    CHAIN_BREAK = "chain_break"
    BALANCE_MISMATCH = "balance_mismatch"


@dataclass(frozen=True, slots=True)
class LedgerProblem:
    kind: ProblemKind
    ref: str  # entry id, or account key for balance mismatches
    detail: str


def verify_chain(
    entries: Iterable[SealedEntry],
    *,
    start_hash: str = GENESIS_HASH,
    expected_head: str | None = None,
) -> list[LedgerProblem]:
    """Check, in chain order, that each entry balances, matches its hash and links on.

    A changed field shows as ``hash_mismatch``; a deleted, inserted or reordered entry as
    ``chain_break`` at the next entry. Deleting the *last* entry is only visible against
    an independently kept head hash, hence ``expected_head``.
    """
    problems: list[LedgerProblem] = []
    previous, last_id = start_hash, ""
    for sealed in entries:
        entry, last_id = sealed.entry, sealed.entry.id
        problems += [
            LedgerProblem(ProblemKind.UNBALANCED, entry.id, p) for p in entry_problems(entry)
        ]
        if sealed.prev_hash != previous:
            detail = f"prev_hash {sealed.prev_hash} does not follow {previous}"
            problems.append(LedgerProblem(ProblemKind.CHAIN_BREAK, entry.id, detail))
        if entry_hash(sealed.prev_hash, entry) != sealed.hash:
            detail = "stored hash does not match the entry's contents"
            problems.append(LedgerProblem(ProblemKind.HASH_MISMATCH, entry.id, detail))
        previous = sealed.hash
    if expected_head is not None and previous != expected_head:
        detail = f"chain ends at {previous}, expected head {expected_head}"
        problems.append(LedgerProblem(ProblemKind.CHAIN_BREAK, last_id, detail))
    return problems


def account_balances(entries: Iterable[JournalEntry]) -> dict[str, int]:
    """Balance per account key: the sum of its postings."""
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            totals[posting.account.key] += posting.amount
    return dict(totals)


def compare_balances(stored: Mapping[str, int], computed: Mapping[str, int]) -> list[LedgerProblem]:
    """Accounts whose stored balance differs from the sum of their postings (absent = 0)."""
    return [
        LedgerProblem(
            ProblemKind.BALANCE_MISMATCH,
            key,
            f"stored {stored.get(key, 0)}, computed {computed.get(key, 0)}",
        )
        for key in sorted(stored.keys() | computed.keys())
        if stored.get(key, 0) != computed.get(key, 0)
    ]
