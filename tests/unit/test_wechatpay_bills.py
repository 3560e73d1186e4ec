"""WeChat Pay v3 trade and fund-flow bills: back-quoted fields, summaries, SHA-1, gzip."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from tuition.channels.wechatpay.bills import (
    check_hash,
    combine,
    gunzip,
    parse_fundflow_bill,
    parse_trade_bill,
)
from tuition.domain.reconciliation import BillMalformed, EntryKind

BILLS = Path(__file__).parents[1] / "fixtures" / "wechatpay" / "bills"
DAY = date(2026, 11, 30)
TRADE = (BILLS / "tradebill_20261130.csv").read_bytes()
FLOW = (BILLS / "fundflowbill_20261130.csv").read_bytes()


def test_the_trade_bill_is_read_row_by_row_without_its_back_quotes() -> None:
    bill = parse_trade_bill(TRADE)

    assert bill.account == "1230000109"
    first, late, refund = bill.entries
    assert (first.kind, first.payment_id, first.amount, first.fee) == (
        EntryKind.PAYMENT,
        "pay_01JB0000000000000000000001",
        8880,
        53,  # 0.53000 yuan
    )
    assert first.channel_trade_no == "4200002345202611303456789012"
    assert (late.occurred_at.hour, late.occurred_at.minute) == (23, 59)
    assert (refund.kind, refund.refund_id, refund.amount, refund.fee) == (
        EntryKind.REFUND,
        "re_01JB0000000000000000000001",
        4000,
        24,
    )
    assert refund.channel_refund_no == "50300806962026113005978994968"


def test_the_fund_flow_gives_the_money_settled_and_both_bills_make_one_day() -> None:
    flows = parse_fundflow_bill(FLOW)
    assert [f.amount for f in flows] == [8880, -53, -3976, 19900, -119]
    bill = combine(
        DAY,
        channel="wechatpay",
        account="m",
        trade=parse_trade_bill(TRADE),
        flows=flows,
        digest="d",
    )
    assert bill.settled == 24632
    assert bill.fees_taken == 148
    assert bill.totals.payment_amount == 28780


def test_a_gzipped_bill_is_checked_against_the_hash_of_its_text() -> None:
    text = gunzip((BILLS / "tradebill_20261130.csv.gz").read_bytes())
    assert text == TRADE
    check_hash(text, "SHA1", hashlib.sha1(TRADE).hexdigest().upper())
    with pytest.raises(BillMalformed) as caught:
        check_hash(text + b" ", "SHA1", hashlib.sha1(TRADE).hexdigest())
    assert caught.value.code == "bill_hash_mismatch"
    with pytest.raises(BillMalformed):
        check_hash(text, "MD5", hashlib.sha1(TRADE).hexdigest())


def test_a_truncated_gzip_is_refused() -> None:
    raw = (BILLS / "tradebill_20261130.csv.gz").read_bytes()
    with pytest.raises(BillMalformed) as caught:
        gunzip(raw[:-12])
    assert caught.value.code == "bill_bad_archive"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (TRADE[: TRADE.index("总交易单数".encode())], "bill_truncated"),
        (TRADE.replace("费率备注".encode(), "费率备注,新列".encode(), 1), "bill_unknown_columns"),
        (TRADE.replace(b"`3,`287.80", b"`3,`288.80"), "bill_totals_mismatch"),
        (TRADE.replace(b"`88.80,`0.00,`0,", b"88.80,`0.00,`0,", 1), "bill_bad_row"),
        (TRADE.decode().encode("gbk"), "bill_bad_encoding"),
        (TRADE.replace(b"`SUCCESS,`OTHERS", b"`LOST,`OTHERS", 1), "bill_bad_row"),
        (TRADE.replace(b"`0.53000", b"`zero", 1), "bill_bad_amount"),
    ],
)
def test_a_malformed_trade_bill_is_refused_with_a_clear_error(text: bytes, code: str) -> None:
    with pytest.raises(BillMalformed) as caught:
        parse_trade_bill(text)
    assert caught.value.code == code


def test_a_fund_flow_whose_summary_does_not_add_up_is_refused() -> None:
    with pytest.raises(BillMalformed) as caught:
        parse_fundflow_bill(FLOW.replace(b"`3,`41.48", b"`3,`41.49"))
    assert caught.value.code == "bill_totals_mismatch"


def test_a_trade_bill_holding_another_day_is_refused() -> None:
    with pytest.raises(BillMalformed) as caught:
        combine(
            date(2026, 12, 1),
            channel="wechatpay",
            account="m",
            trade=parse_trade_bill(TRADE),
            flows=[],
            digest="d",
        )
    assert caught.value.code == "bill_wrong_day"
