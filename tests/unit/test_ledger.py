from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuition.domain.errors import CurrencyError, TuitionError, ValidationFailed
from tuition.domain.ledger import (
    GENESIS_HASH,
    AccountKind,
    AccountRef,
    AccountType,
    JournalEntry,
    Posting,
    ProblemKind,
    SealedEntry,
    UnbalancedEntry,
    account_balances,
    build_entry,
    compare_balances,
    creator_shares,
    display_balance,
    entry_hash,
    entry_problems,
    payment_succeeded_entry,
    refund_entry,
    reversal_entry,
    seal_all,
    verify_chain,
)
from tuition.domain.payments import channel_fee, net_to_platform

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
CLEARING = AccountRef(AccountKind.CHANNEL_CLEARING, "CNY", "alipay")
FEES = AccountRef(AccountKind.CHANNEL_FEES, "CNY")
REVENUE = AccountRef(AccountKind.PLATFORM_REVENUE, "CNY")
REFUNDS = AccountRef(AccountKind.REFUNDS, "CNY")
TAX = AccountRef(AccountKind.TAX_PAYABLE, "CNY")
CASH = AccountRef(AccountKind.CASH, "CNY")


def creator(creator_id: str, currency: str = "CNY") -> AccountRef:
    return AccountRef(AccountKind.CREATOR_PAYABLE, currency, creator_id)


def rows(entry: JournalEntry) -> list[tuple[str, int]]:
    return [(p.account.key, p.amount) for p in entry.postings]


def pay(amount: int = 10000, fee: int = 60, tax: int = 0, **overrides: Any) -> JournalEntry:
    params: dict[str, Any] = {
        "payment_id": "pay_1",
        "channel": "alipay",
        "currency": "CNY",
        "amount": amount,
        "fee": fee,
        "tax": tax,
        "creator_shares": [("cre_1", (amount - tax) * 7 // 10)],
        "occurred_at": T0,
    }
    return payment_succeeded_entry(**(params | overrides))


# -- the worked example -------------------------------------------------------------


def test_100_cny_at_a_0_6_percent_fee_and_70_percent_share_posts_the_documented_entry() -> None:
    fee = channel_fee(10000, Decimal("0.006"))
    [share] = creator_shares([10000], [Decimal("0.70")])
    entry = payment_succeeded_entry(
        payment_id="pay_1",
        channel="alipay",
        currency="CNY",
        amount=10000,
        fee=fee,
        tax=0,
        creator_shares=[("cre_1", share)],
        occurred_at=T0,
    )
    assert rows(entry) == [
        ("channel_clearing:CNY:alipay", 10000),
        ("channel_fees:CNY", 60),
        ("channel_clearing:CNY:alipay", -60),
        ("creator_pending:CNY:cre_1", -7000),
        ("platform_revenue:CNY", -3000),
    ]
    assert sum(p.amount for p in entry.postings if p.amount > 0) == 10060
    assert sum(p.amount for p in entry.postings if p.amount < 0) == -10060
    assert entry.source == "payment:pay_1"
    balances = account_balances([entry])
    assert balances[CLEARING.key] == 9940  # what Alipay will settle
    net = display_balance(AccountType.REVENUE, balances[REVENUE.key]) - display_balance(
        AccountType.EXPENSE, balances[FEES.key]
    )
    assert net == 2940 == net_to_platform(10000, fee, share, 0)


def test_tax_is_credited_to_tax_payable_and_left_out_of_revenue() -> None:
    entry = pay(amount=10600, fee=64, tax=600)
    assert rows(entry)[-2:] == [("tax_payable:CNY", -600), ("platform_revenue:CNY", -3000)]
    assert entry_problems(entry) == []


def test_zero_fee_zero_tax_and_zero_revenue_are_left_out_rather_than_posted() -> None:
    entry = pay(amount=100, fee=0, creator_shares=[("cre_1", 100)])
    assert rows(entry) == [
        ("channel_clearing:CNY:alipay", 100),
        ("creator_pending:CNY:cre_1", -100),
    ]


def test_shares_of_one_creator_are_merged_into_one_posting() -> None:
    entry = pay(creator_shares=[("cre_1", 3000), ("cre_2", 1000), ("cre_1", 2000)])
    assert ("creator_pending:CNY:cre_1", -5000) in rows(entry)
    assert ("platform_revenue:CNY", -4000) in rows(entry)


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": 0},
        {"fee": -1},
        {"fee": 10001},
        {"tax": 10001},
        {"creator_shares": [("cre_1", 9000), ("cre_2", 1001)]},
        {"creator_shares": [("cre_1", -1)]},
        {"currency": "cny"},
        {"channel": ""},
    ],
)
def test_a_payment_entry_refuses_inconsistent_inputs(overrides: dict[str, Any]) -> None:
    with pytest.raises((ValidationFailed, CurrencyError)):
        pay(**overrides)


# -- accounts -----------------------------------------------------------------------


def test_account_keys_are_stable_and_parse_back() -> None:
    assert creator("cre_123").key == "creator_payable:CNY:cre_123"
    assert REVENUE.key == "platform_revenue:CNY"
    for ref in (creator("cre_1"), REVENUE, CLEARING, CASH, creator("a:b")):
        assert AccountRef.parse(ref.key) == ref


@pytest.mark.parametrize("key", ["nope:CNY", "platform_revenue:XXX", "creator_payable:CNY", ""])
def test_a_malformed_account_key_is_refused(key: str) -> None:
    with pytest.raises((ValidationFailed, CurrencyError)):
        AccountRef.parse(key)


def test_per_party_accounts_need_a_qualifier_and_house_accounts_refuse_one() -> None:
    with pytest.raises(ValidationFailed):
        AccountRef(AccountKind.CUSTOMER_WALLET, "CNY")
    with pytest.raises(ValidationFailed):
        AccountRef(AccountKind.PLATFORM_REVENUE, "CNY", "alipay")
    with pytest.raises(ValidationFailed):
        AccountRef(AccountKind.CREATOR_PAYABLE, "CNY", " cre_1")


def test_every_account_kind_has_a_type_and_refunds_are_contra_revenue() -> None:
    assert {kind.account_type for kind in AccountKind} == set(AccountType)
    assert AccountKind.REFUNDS.account_type is AccountType.REVENUE
    assert AccountKind.CUSTOMER_WALLET.account_type is AccountType.LIABILITY
    # A refunds debit of 30.00 reads as -30.00 in the revenue section.
    assert display_balance(AccountKind.REFUNDS.account_type, 3000) == -3000


def test_credit_normal_balances_display_negated_and_debit_normal_as_is() -> None:
    assert display_balance(AccountType.LIABILITY, -7000) == 7000
    assert display_balance(AccountType.REVENUE, -3000) == 3000
    assert display_balance(AccountType.ASSET, 9940) == 9940
    assert display_balance(AccountType.EXPENSE, 60) == 60


# -- build_entry --------------------------------------------------------------------


@pytest.mark.parametrize(
    "postings",
    [
        [],
        [Posting(CASH, 0), Posting(REVENUE, 0)],
        [Posting(CASH, 100)],
        [Posting(CASH, 100), Posting(REVENUE, -99)],
        [Posting(CASH, True), Posting(REVENUE, -1)],
        [Posting(CASH, Decimal(1)), Posting(REVENUE, -1)],  # type: ignore[arg-type]
        [Posting(CASH, 10**16), Posting(REVENUE, -(10**16))],
        [Posting(CASH, 100), Posting(AccountRef(AccountKind.CASH, "USD"), -100)],
    ],
)
def test_build_entry_refuses_postings_that_break_double_entry(postings: list[Posting]) -> None:
    with pytest.raises(UnbalancedEntry) as raised:
        build_entry("test:1", "bad", postings, T0)
    assert isinstance(raised.value, TuitionError)
    assert raised.value.code == "ledger_unbalanced"


def test_an_entry_in_two_currencies_must_balance_in_each() -> None:
    usd_cash = AccountRef(AccountKind.CASH, "USD")
    usd_rev = AccountRef(AccountKind.PLATFORM_REVENUE, "USD")
    postings = [
        Posting(CASH, 700),
        Posting(REVENUE, -700),
        Posting(usd_cash, 100),
        Posting(usd_rev, -100),
    ]
    entry = build_entry("fx:1", "two currencies", postings, T0)
    assert len(entry.postings) == 4
    assert entry.id.startswith("je_")


def test_build_entry_needs_a_source_and_an_aware_time() -> None:
    postings = [Posting(CASH, 1), Posting(REVENUE, -1)]
    with pytest.raises(ValidationFailed):
        build_entry("", "x", postings, T0)
    with pytest.raises(ValidationFailed):
        build_entry("s", "x", postings, T0.replace(tzinfo=None))


# -- creator shares -----------------------------------------------------------------


@given(
    amount=st.integers(0, 10**12),
    rate=st.decimals(min_value=0, max_value=1, places=4, allow_nan=False),
)
def test_a_creator_share_is_whole_within_half_a_unit_and_never_exceeds_the_line(
    amount: int, rate: Decimal
) -> None:
    [share] = creator_shares([amount], [rate])
    assert 0 <= share <= amount
    assert abs(share - amount * rate) <= Decimal("0.5")


def test_creator_shares_need_one_rate_per_line_within_zero_and_one() -> None:
    assert creator_shares([1000, 333], [Decimal("0.7"), Decimal("0.5")]) == [700, 167]
    with pytest.raises(ValidationFailed):
        creator_shares([1000], [])
    with pytest.raises(ValidationFailed):
        creator_shares([1000], [Decimal("1.01")])


# -- refunds and reversals ----------------------------------------------------------


def test_a_partial_refund_is_split_in_proportion_and_the_channel_keeps_its_fee() -> None:
    entry = refund_entry(pay(), refund_id="re_1", amount=5000, occurred_at=T0)
    assert entry.source == "refund:re_1"
    assert rows(entry) == [
        ("channel_clearing:CNY:alipay", -5000),
        ("creator_pending:CNY:cre_1", 3500),
        ("refunds:CNY", 1500),
    ]


def test_a_fee_the_channel_returns_is_taken_off_the_fee_expense() -> None:
    entry = refund_entry(pay(), refund_id="re_1", amount=10000, fee_returned=60, occurred_at=T0)
    balances = account_balances([pay(), entry])
    assert balances[FEES.key] == 0
    assert balances[CLEARING.key] == 0
    with pytest.raises(ValidationFailed):
        refund_entry(pay(), refund_id="re_1", amount=10, fee_returned=61, occurred_at=T0)


def test_a_full_refund_returns_every_party_and_leaves_only_the_kept_fee() -> None:
    original = pay(amount=10600, fee=64, tax=600)
    refund = refund_entry(original, refund_id="re_1", amount=10600, occurred_at=T0)
    balances = account_balances([original, refund])
    assert balances["creator_pending:CNY:cre_1"] == 0
    assert balances[TAX.key] == 0
    assert balances[REVENUE.key] + balances[REFUNDS.key] == 0
    assert balances[CLEARING.key] == -64
    assert balances[FEES.key] == 64


def test_refunding_more_than_remains_is_refused() -> None:
    first = refund_entry(pay(), refund_id="re_1", amount=9000, occurred_at=T0)
    with pytest.raises(ValidationFailed):
        refund_entry(pay(), refund_id="re_2", amount=1001, prior_refunds=[first], occurred_at=T0)
    with pytest.raises(ValidationFailed):
        refund_entry(pay(), refund_id="re_2", amount=0, occurred_at=T0)


def test_a_reversed_refund_makes_its_amount_refundable_again() -> None:
    first = refund_entry(pay(), refund_id="re_1", amount=9000, occurred_at=T0)
    undo = reversal_entry(first, "reversal:re_1", occurred_at=T0)
    again = refund_entry(
        pay(), refund_id="re_2", amount=10000, prior_refunds=[first, undo], occurred_at=T0
    )
    assert rows(again)[0] == ("channel_clearing:CNY:alipay", -10000)


def test_a_refund_of_another_payment_is_not_accepted_as_a_prior_refund() -> None:
    other = pay(channel="wechatpay", payment_id="pay_2")
    stray = refund_entry(other, refund_id="re_9", amount=100, occurred_at=T0)
    with pytest.raises(ValidationFailed):
        refund_entry(pay(), refund_id="re_1", amount=100, prior_refunds=[stray], occurred_at=T0)


def test_a_reversal_negates_every_posting_so_balances_return_to_zero() -> None:
    original = pay(amount=10600, fee=64, tax=600)
    later = T0 + timedelta(days=1)
    reversal = reversal_entry(original, "reversal:pay_1", occurred_at=later)
    assert rows(reversal) == [(key, -amount) for key, amount in rows(original)]
    assert reversal.source == "reversal:pay_1"
    assert reversal.occurred_at == later
    assert set(account_balances([original, reversal]).values()) == {0}


# -- generated payments and refunds -------------------------------------------------


@st.composite
def payments(draw: st.DrawFn, payment_id: str = "pay_1") -> dict[str, Any]:
    amount = draw(st.integers(1, 10**12))
    tax = draw(st.integers(0, amount))
    budget, shares = amount - tax, []
    for _ in range(draw(st.integers(0, 4))):
        share = draw(st.integers(0, budget))
        budget -= share
        shares.append((draw(st.sampled_from(["cre_a", "cre_b", "cre_c"])), share))
    return {
        "payment_id": payment_id,
        "channel": draw(st.sampled_from(["alipay", "wechatpay", "sandbox"])),
        "currency": draw(st.sampled_from(["CNY", "JPY", "USD", "KWD"])),
        "amount": amount,
        "fee": draw(st.integers(0, amount)),
        "tax": tax,
        "creator_shares": shares,
        "occurred_at": draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
        ),
    }


@given(payments())
def test_any_generated_payment_entry_balances_per_currency(params: dict[str, Any]) -> None:
    entry = payment_succeeded_entry(**params)
    assert entry_problems(entry) == []
    assert sum(p.amount for p in entry.postings) == 0
    assert {p.account.currency for p in entry.postings} == {params["currency"]}
    clearing = AccountRef(AccountKind.CHANNEL_CLEARING, params["currency"], params["channel"])
    assert account_balances([entry])[clearing.key] == params["amount"] - params["fee"]


@given(params=payments(), data=st.data())
def test_many_partial_refunds_never_over_reverse_and_a_full_refund_is_exact(
    params: dict[str, Any], data: st.DataObject
) -> None:
    original = payment_succeeded_entry(**params)
    owed = {p.account.key: -p.amount for p in original.postings if p.amount < 0}
    revenue = AccountRef(AccountKind.PLATFORM_REVENUE, params["currency"]).key
    refunds = AccountRef(AccountKind.REFUNDS, params["currency"]).key
    if revenue in owed:
        owed[refunds] = owed.pop(revenue)
    owed = {key: value for key, value in owed.items() if not key.startswith("channel_")}
    priors: list[JournalEntry] = []
    refunded, total = 0, params["amount"]
    while refunded < total and len(priors) < 25:
        left = total - refunded
        if data.draw(st.integers(0, 7), label="finish") == 0:
            amount = left
        else:
            amount = data.draw(st.integers(1, left) | st.integers(1, min(left, 3)), label="amount")
        entry = refund_entry(
            original,
            refund_id=f"re_{len(priors)}",
            amount=amount,
            prior_refunds=priors,
            occurred_at=T0,
        )
        assert entry_problems(entry) == []
        if not priors:  # the first refund is proportional to the payment within one unit
            for posting in entry.postings:
                if posting.account.key in owed:
                    exact = Decimal(amount * owed[posting.account.key]) / total
                    assert abs(posting.amount - exact) < 1
        priors.append(entry)
        refunded += amount
        taken = account_balances(priors)
        assert sum(taken[key] for key in owed if key in taken) == refunded
        for key, value in taken.items():
            if key in owed:
                assert 0 <= value <= owed[key], key
    if refunded == total:
        taken = account_balances(priors)
        assert all(taken.get(key, 0) == value for key, value in owed.items())
        with pytest.raises(ValidationFailed):
            refund_entry(original, refund_id="re_x", amount=1, prior_refunds=priors, occurred_at=T0)


# -- hash chain ---------------------------------------------------------------------


@st.composite
def chains(draw: st.DrawFn, min_size: int = 1) -> list[SealedEntry]:
    size = draw(st.integers(min_size, 5))
    entries = [
        payment_succeeded_entry(**draw(payments(payment_id=f"pay_{i}")), entry_id=f"je_{i}")
        for i in range(size)
    ]
    return seal_all(entries)


def tamper(sealed: SealedEntry, how: str) -> SealedEntry:
    entry = sealed.entry
    first, *rest = entry.postings
    changed: JournalEntry | None = None
    if how in ("id", "source", "description"):
        changed = replace(entry, **{how: getattr(entry, how) + "x"})
    elif how == "occurred_at":
        changed = replace(entry, occurred_at=entry.occurred_at + timedelta(microseconds=1))
    elif how == "amount":  # still balanced: one unit moved between postings
        moved = (
            replace(first, amount=first.amount + 1),
            replace(rest[0], amount=rest[0].amount - 1),
        )
        changed = replace(entry, postings=(*moved, *rest[1:]))
    elif how == "account":
        other = AccountRef(AccountKind.CASH, first.account.currency)
        changed = replace(entry, postings=(replace(first, account=other), *rest))
    elif how == "drop_posting":
        changed = replace(entry, postings=entry.postings[:-1])
    elif how == "prev_hash":
        return replace(sealed, prev_hash="f" * 64)
    elif how == "hash":
        return replace(sealed, hash="f" * 64)
    assert changed is not None
    assert changed != entry
    return replace(sealed, entry=changed)


TAMPERINGS = ["id", "source", "description", "occurred_at", "amount", "account", "drop_posting"]


@given(chain=chains(), data=st.data())
def test_tampering_with_any_field_of_any_entry_is_detected(
    chain: list[SealedEntry], data: st.DataObject
) -> None:
    assert verify_chain(chain) == []
    index = data.draw(st.integers(0, len(chain) - 1), label="index")
    how = data.draw(st.sampled_from([*TAMPERINGS, "prev_hash", "hash"]), label="how")
    forged = tamper(chain[index], how)
    problems = verify_chain([*chain[:index], forged, *chain[index + 1 :]])
    assert any(p.ref == forged.entry.id for p in problems)
    assert ProblemKind.HASH_MISMATCH in {p.kind for p in problems}


@given(chain=chains(min_size=2), data=st.data())
def test_deleting_any_entry_is_detected(chain: list[SealedEntry], data: st.DataObject) -> None:
    head = chain[-1].hash
    index = data.draw(st.integers(0, len(chain) - 1), label="index")
    shortened = chain[:index] + chain[index + 1 :]
    problems = verify_chain(shortened, expected_head=head)
    assert ProblemKind.CHAIN_BREAK in {p.kind for p in problems}
    if index < len(chain) - 1:  # the next entry no longer links, even without a head
        assert verify_chain(shortened)[0].ref == chain[index + 1].entry.id


def test_swapping_two_entries_breaks_the_chain() -> None:
    chain = seal_all([pay(payment_id="pay_1"), pay(payment_id="pay_2")])
    problems = verify_chain([chain[1], chain[0]])
    assert {p.kind for p in problems} == {ProblemKind.CHAIN_BREAK}


def test_an_unbalanced_stored_entry_is_reported_not_raised() -> None:
    bad = JournalEntry("je_1", "s", "d", (Posting(CASH, 5), Posting(REVENUE, -4)), T0)
    problems = verify_chain(seal_all([bad]))
    assert [(p.kind, p.ref) for p in problems] == [(ProblemKind.UNBALANCED, "je_1")]


def test_a_suffix_of_the_chain_verifies_from_its_predecessors_hash() -> None:
    chain = seal_all([pay(payment_id=f"pay_{i}") for i in range(4)])
    assert verify_chain(chain[2:], start_hash=chain[1].hash, expected_head=chain[-1].hash) == []
    assert chain[0].prev_hash == GENESIS_HASH == "0" * 64


def test_the_entry_hash_ignores_posting_order_and_time_zone_spelling() -> None:
    entry = pay()
    shuffled = replace(entry, postings=tuple(reversed(entry.postings)))
    shanghai = replace(entry, occurred_at=T0.astimezone(timezone(timedelta(hours=8))))
    naive = replace(entry, occurred_at=T0.replace(tzinfo=None))
    digests = {entry_hash(GENESIS_HASH, e) for e in (entry, shuffled, shanghai, naive)}
    assert len(digests) == 1


def test_the_entry_hash_is_pinned_so_stored_chains_stay_verifiable() -> None:
    entry = pay(entry_id="je_01")
    canonical = (
        '{"description":"payment pay_1 succeeded via alipay","id":"je_01",'
        '"occurred_at":"2025-01-02T03:04:05.678901+00:00","postings":['
        '{"account":"channel_clearing:CNY:alipay","amount":-60},'
        '{"account":"channel_clearing:CNY:alipay","amount":10000},'
        '{"account":"channel_fees:CNY","amount":60},'
        '{"account":"creator_pending:CNY:cre_1","amount":-7000},'
        '{"account":"platform_revenue:CNY","amount":-3000}],'
        f'"prev_hash":"{GENESIS_HASH}","source":"payment:pay_1"}}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert entry_hash(GENESIS_HASH, entry) == expected
    assert expected == "b60fbb4ea1fd74e9205ede79673b1450a171a24722d3dfcc0631cbbb316e8f8f"


# -- balances -----------------------------------------------------------------------


def test_compare_balances_reports_each_account_that_differs_from_its_postings() -> None:
    computed = account_balances([pay()])
    assert compare_balances(computed, computed) == []
    stored = computed | {REVENUE.key: -2999, CASH.key: 5}
    del stored[FEES.key]
    problems = compare_balances(stored, computed)
    assert [p.ref for p in problems] == sorted([REVENUE.key, CASH.key, FEES.key])
    assert {p.kind for p in problems} == {ProblemKind.BALANCE_MISMATCH}
    assert "stored -2999, computed -3000" in {p.detail for p in problems}
