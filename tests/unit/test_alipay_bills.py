"""Alipay's daily trade bill: a zip of GBK CSVs (detail and summary) parsed into rows."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path

import pytest

from tuition.channels.alipay.bills import parse_trade_bill
from tuition.domain.reconciliation import BEIJING, BillMalformed, EntryKind

BILLS = Path(__file__).parents[1] / "fixtures" / "alipay" / "bills"
DAY = date(2026, 11, 30)


def parse(name: str, day: date = DAY):  # type: ignore[no-untyped-def]
    return parse_trade_bill((BILLS / name).read_bytes(), day=day, channel="alipay", account="app")


def test_the_gbk_zip_with_gbk_file_names_is_read_row_by_row() -> None:
    bill = parse("20881234567890120156_20261130.csv.zip")

    assert bill.account == "20881234567890120156"
    assert bill.currency == "CNY"
    first, second, refund = bill.entries
    assert (first.kind, first.payment_id, first.amount, first.fee) == (
        EntryKind.PAYMENT,
        "pay_01JB0000000000000000000001",
        8880,
        53,
    )
    assert first.channel_trade_no == "2026113022001456781234567890"  # tab padding gone
    assert first.occurred_at.tzinfo is BEIJING
    assert first.occurred_at.hour == 10
    assert (second.amount, second.fee) == (19900, 119)
    assert (refund.kind, refund.refund_id, refund.amount, refund.fee) == (
        EntryKind.REFUND,
        "re_01JB0000000000000000000001",
        4000,
        24,
    )
    assert refund.payment_id == first.payment_id


def test_the_totals_and_the_settled_amount_come_from_the_rows_and_agree_with_the_summary() -> None:
    bill = parse("20881234567890120156_20261130.csv.zip")

    assert bill.totals.payments == 2
    assert bill.totals.payment_amount == 28780
    assert bill.totals.refunds == 1
    assert bill.totals.refund_amount == 4000
    assert bill.totals.fees == 53 + 119 - 24
    assert bill.settled == 24632  # 实收净额 of the summary
    assert len(bill.digest) == 64


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("truncated_20261130.csv.zip", "bill_bad_archive"),
        ("detail_utf8_20261130.csv.zip", "bill_bad_encoding"),
        ("unknown_column_20261130.csv.zip", "bill_unknown_columns"),
        ("footer_mismatch_20261130.csv.zip", "bill_totals_mismatch"),
    ],
)
def test_a_malformed_bill_is_refused_with_a_clear_error(name: str, code: str) -> None:
    with pytest.raises(BillMalformed) as caught:
        parse(name)
    assert caught.value.code == code
    assert caught.value.status == 422


def test_a_bill_of_another_day_is_refused() -> None:
    with pytest.raises(BillMalformed, match="2026-11-30, not 2026-11-29") as caught:
        parse("20881234567890120156_20261130.csv.zip", date(2026, 11, 29))
    assert caught.value.code == "bill_wrong_day"


def test_a_zip_without_the_summary_file_is_refused() -> None:
    source = zipfile.ZipFile(BILLS / "20881234567890120156_20261130.csv.zip")
    detail = next(i for i in source.infolist() if "(" not in i.filename)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(detail, source.read(detail))
    with pytest.raises(BillMalformed) as caught:
        parse_trade_bill(out.getvalue(), day=DAY, channel="alipay", account="app")
    assert caught.value.code == "bill_files_missing"


def test_a_detail_cut_before_its_end_marker_is_refused_as_truncated() -> None:
    source = zipfile.ZipFile(BILLS / "20881234567890120156_20261130.csv.zip")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            name = info.filename.encode("cp437").decode("gbk")  # as Alipay named it
            if "(" not in name:
                data = data[: data.index("#---".encode("gbk"), 200)]
            archive.writestr(name, data)
    with pytest.raises(BillMalformed) as caught:
        parse_trade_bill(out.getvalue(), day=DAY, channel="alipay", account="app")
    assert caught.value.code == "bill_truncated"
