"""Payout and earnings rules without a database: the status machine, each entry balances
and the hold's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tuition.domain.earnings import (
    HeldEarning,
    HoldStatus,
    hold_days,
    hold_transition,
    mask_account,
    release_entry,
)
from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.ledger import account_balances, entry_problems
from tuition.domain.payouts import (
    PayoutStatus,
    created_entry,
    failed_entry,
    paid_entry,
    payout_amount,
    returned_entry,
    transition,
)

T0 = datetime(2026, 11, 5, tzinfo=UTC)


def test_a_payout_moves_only_along_its_state_machine() -> None:
    assert transition(PayoutStatus.PENDING, PayoutStatus.PROCESSING) is PayoutStatus.PROCESSING
    assert transition(PayoutStatus.PROCESSING, PayoutStatus.PAID) is PayoutStatus.PAID
    assert transition(PayoutStatus.PAID, PayoutStatus.RETURNED) is PayoutStatus.RETURNED
    assert transition(PayoutStatus.PENDING, PayoutStatus.FAILED) is PayoutStatus.FAILED
    for current, target in [
        (PayoutStatus.PENDING, PayoutStatus.PAID),
        (PayoutStatus.PAID, PayoutStatus.FAILED),
        (PayoutStatus.FAILED, PayoutStatus.PENDING),
        (PayoutStatus.RETURNED, PayoutStatus.PAID),
    ]:
        with pytest.raises(IllegalTransition):
            transition(current, target)


def test_a_paid_payout_moves_gross_out_of_available_net_to_cash_and_tax_to_tax_payable() -> None:
    entries = [
        created_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0),
        paid_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0),
    ]
    assert all(entry_problems(e) == [] for e in entries)
    assert {k: v for k, v in account_balances(entries).items() if v} == {
        "creator_payable:CNY:cre_1": 500000,
        "tax_payable:CNY": -80000,
        "cash:CNY": -420000,
    }
    assert [e.source for e in entries] == ["payout:po_1:created", "payout:po_1:paid"]


def test_a_failed_or_returned_payout_gives_back_the_whole_amount_and_the_tax() -> None:
    made = created_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0)
    failed = failed_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0)
    assert {k: v for k, v in account_balances([made, failed]).items() if v} == {}
    paid = paid_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0)
    back = returned_entry("po_1", "cre_1", "CNY", 500000, 80000, at=T0)
    assert {k: v for k, v in account_balances([made, paid, back]).items() if v} == {}


def test_a_payout_takes_all_available_by_default_and_refuses_below_the_minimum() -> None:
    assert payout_amount(500000, None, 100) == 500000
    assert payout_amount(500000, 1000, 100) == 1000
    with pytest.raises(ValidationFailed) as below:
        payout_amount(50, None, 100)
    assert below.value.code == "payout_below_minimum"
    with pytest.raises(ValidationFailed):
        payout_amount(-250000, None, 100)  # a negative balance pays nothing
    with pytest.raises(ValidationFailed):
        created_entry("po_1", "cre_1", "CNY", 100, 101, at=T0)


def test_the_hold_is_the_longest_refund_window_of_the_order_or_the_default() -> None:
    assert hold_days([None, None]) == 7
    assert hold_days([3, 30, None]) == 30
    assert hold_days([0]) == 0
    assert hold_days([], 14) == 14
    with pytest.raises(ValidationFailed):
        hold_days([1], -1)


def test_a_release_moves_what_the_hold_still_owes_each_payee_from_pending_to_available() -> None:
    entry = release_entry(
        "pay_1",
        "CNY",
        [
            HeldEarning("cre_1", 6930, 2100),
            HeldEarning("cre_2", 100, 0),
            HeldEarning("cre_1", 10, 0),
        ],
        occurred_at=T0,
    )
    assert entry is not None
    assert entry.source == "earnings_release:pay_1"
    assert account_balances([entry]) == {
        "creator_pending:CNY:cre_1": 4840,
        "creator_payable:CNY:cre_1": -4840,
        "creator_pending:CNY:cre_2": 100,
        "creator_payable:CNY:cre_2": -100,
    }
    assert release_entry("pay_2", "CNY", [HeldEarning("cre_1", 50, 50)], occurred_at=T0) is None
    with pytest.raises(ValidationFailed):
        release_entry("pay_3", "CNY", [HeldEarning("cre_1", 50, 51)], occurred_at=T0)


def test_a_hold_is_released_once_and_never_goes_back() -> None:
    assert hold_transition(HoldStatus.PENDING, HoldStatus.RELEASED) is HoldStatus.RELEASED
    with pytest.raises(IllegalTransition):
        hold_transition(HoldStatus.RELEASED, HoldStatus.PENDING)


def test_payout_accounts_are_masked_to_their_last_characters() -> None:
    assert mask_account("6222020000001234") == "************1234"
    assert mask_account("ada@example.com") == "a***@example.com"
    assert mask_account("o123") == "****"
    assert mask_account(None) is None
