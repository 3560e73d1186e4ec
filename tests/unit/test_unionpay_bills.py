"""UnionPay's bill file: the ZM detail read from a fixture, and every defect refused."""

from __future__ import annotations

import io
import zipfile
import zlib
from datetime import date, datetime
from pathlib import Path

import pytest

from tuition.channels.unionpay.bills import decode_file_content, parse_bill, zm_file_name
from tuition.domain.reconciliation import BEIJING, BillMalformed, EntryKind

FIXTURES = Path(__file__).parent.parent / "fixtures" / "unionpay"
MER_ID = "777290058110048"
DAY = date(2026, 11, 1)
ZM = (FIXTURES / zm_file_name(MER_ID, DAY)).read_bytes()


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_the_zm_file_reads_as_payments_and_refunds_with_their_fees() -> None:
    data = _zip({zm_file_name(MER_ID, DAY): ZM, f"INN26110188ZME_{MER_ID}": b""})
    bill = parse_bill(data, mer_id=MER_ID, day=DAY)

    first, second, refund = bill.entries
    assert (first.kind, first.payment_id, first.amount, first.fee) == (
        EntryKind.PAYMENT,
        "pay_01JBWQ7X2V8Q4M5N6P7R8S9T0W",
        8880,
        53,
    )
    assert first.channel_trade_no == "202611011030150000001"
    assert first.occurred_at == datetime(2026, 11, 1, 10, 30, 15, tzinfo=BEIJING)
    assert (second.amount, second.fee) == (19900, 119)
    assert (refund.kind, refund.refund_id, refund.payment_id, refund.amount, refund.fee) == (
        EntryKind.REFUND,
        "re_01JBWQ7X2V8Q4M5N6P7R8S9T2Y",
        "pay_01JBWQ7X2V8Q4M5N6P7R8S9T0W",  # the payment whose queryId is its origQryId
        1000,
        6,
    )
    assert refund.channel_refund_no == "202611011500000000003"
    assert (bill.totals.payments, bill.totals.payment_amount) == (2, 28780)
    assert (bill.totals.refunds, bill.totals.refund_amount, bill.totals.fees) == (1, 1000, 166)
    assert bill.settled == 8827 + 19781 - 994
    assert bill.settled == bill.totals.payment_amount - bill.totals.refund_amount - bill.totals.fees
    assert bill.account == MER_ID
    assert bill.channel == "unionpay"


def test_file_content_is_a_deflated_zip() -> None:
    data = _zip({zm_file_name(MER_ID, DAY): ZM})
    assert decode_file_content(zlib.compress(data)) == data
    with pytest.raises(BillMalformed):
        decode_file_content(data)


def _line(index: int, start: int, replacement: str) -> bytes:
    lines = ZM.decode("gbk").split("\r\n")
    line = lines[index]
    lines[index] = line[:start] + replacement + line[start + len(replacement) :]
    return "\r\n".join(lines).encode("gbk")


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ({"other.txt": ZM}, "bill_missing_file"),
        ({zm_file_name(MER_ID, DAY): ZM.split(b"\r\n")[0][:100]}, "bill_bad_row"),
        ({zm_file_name(MER_ID, DAY): _line(0, 66, "00000000888X")}, "bill_bad_amount"),
        ({zm_file_name(MER_ID, DAY): _line(0, 166, "X000000000053")}, "bill_bad_amount"),
        ({zm_file_name(MER_ID, DAY): _line(0, 166, "C000000000053")}, "bill_bad_amount"),
        ({zm_file_name(MER_ID, DAY): _line(0, 215, "05")}, "bill_bad_row"),
        ({zm_file_name(MER_ID, DAY): _line(0, 35, "1341103015")}, "bill_bad_time"),
        ({zm_file_name(MER_ID, DAY): _line(0, 112, "order-of-someone-else")}, "bill_bad_row"),
        ({zm_file_name(MER_ID, DAY): _line(0, 293, "777290058110049")}, "bill_bad_row"),
        ({zm_file_name(MER_ID, DAY): b"\xff\xff\xff"}, "bill_bad_encoding"),
    ],
)
def test_a_defective_bill_is_refused_naming_the_defect(files: dict[str, bytes], code: str) -> None:
    with pytest.raises(BillMalformed) as refused:
        parse_bill(_zip(files), mer_id=MER_ID, day=DAY)
    assert refused.value.code == code


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(BillMalformed) as refused:
        parse_bill(ZM, mer_id=MER_ID, day=DAY)
    assert refused.value.code == "bill_not_a_zip"
