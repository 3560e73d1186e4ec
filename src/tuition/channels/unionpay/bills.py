"""UnionPay's daily bill file (对账文件), as the file-transfer request returns it.

``txnType=76``, ``fileType=00`` with the ``settleDate`` (MMDD) returns ``fileContent``:
base64 of a zlib-deflated zip. The zip holds the merchant's files of that settlement
day; the one read here is the general transaction detail ``INN<yymmdd>88ZM_<merId>``
(一般交易明细, "ZM"): one transaction per line, fixed-width fields each followed by one
space (:data:`ZM_LAYOUT`). A consumption is ``交易类型`` 01, a refund 04, an undo 31;
``商户手续费`` and ``结算金额`` are 13 characters, ``D`` (debited from the merchant) or
``C`` (credited to it) and 12 digits of fen. The file states no totals, so the day's
totals are those of its rows and the settled amount their ``结算金额``.

:func:`parse_bill` is pure; any defect (not a zip, no ZM file, a short or unknown line,
an amount or time that does not read, a row of another merchant) raises
:class:`~tuition.domain.reconciliation.BillMalformed` naming it.
"""

# ruff: noqa: RUF001  (UnionPay's formats use full-width punctuation)

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from datetime import date, datetime
from typing import TYPE_CHECKING

from tuition.channels.unionpay import transformers
from tuition.domain.reconciliation import (
    BEIJING,
    Bill,
    BillEntry,
    BillMalformed,
    EntryKind,
    totals_of,
)

if TYPE_CHECKING:
    from tuition.channels.unionpay.client import UnionPayChannel

# (name, width), in order; the line goes on past these with fields not read here.
ZM_LAYOUT: tuple[tuple[str, int], ...] = (
    ("交易代码", 3),
    ("代理机构标识码", 11),
    ("发送机构标识码", 11),
    ("系统跟踪号", 6),
    ("交易传输时间", 10),
    ("帐号", 19),
    ("交易金额", 12),
    ("商户类别", 4),
    ("终端类型", 2),
    ("查询流水号", 21),
    ("支付方式（旧）", 2),
    ("商户订单号", 32),
    ("支付卡类型", 2),
    ("原始交易的系统跟踪号", 6),
    ("原始交易日期时间", 10),
    ("商户手续费", 13),
    ("结算金额", 13),
    ("支付方式", 4),
    ("集团商户代码", 15),
    ("交易类型", 2),
    ("交易子类", 2),
    ("业务类型", 6),
    ("帐号类型", 2),
    ("账单类型", 4),
    ("账单号码", 32),
    ("交互方式", 1),
    ("原交易查询流水号", 21),
    ("商户代码", 15),
)
LINE_WIDTH = sum(width + 1 for _, width in ZM_LAYOUT) - 1


def zm_file_name(mer_id: str, day: date) -> str:
    return f"INN{day:%y%m%d}88ZM_{mer_id}"


def decode_file_content(content: bytes) -> bytes:
    """``fileContent`` after base64: zlib-deflated zip bytes -> the zip."""
    try:
        return zlib.decompress(content)
    except zlib.error:
        raise BillMalformed("fileContent is not deflated data", code="bill_not_a_zip") from None


def split_line(line: str) -> dict[str, str]:
    if len(line) < LINE_WIDTH:
        raise BillMalformed(
            f"a ZM line is {len(line)} characters, at least {LINE_WIDTH} expected",
            code="bill_bad_row",
        )
    fields, position = {}, 0
    for name, width in ZM_LAYOUT:
        fields[name] = line[position : position + width].strip()
        position += width + 1
    return fields


def _signed_fen(text: str, column: str) -> tuple[str, int]:
    if len(text) != 13 or text[0] not in "CD" or not text[1:].isdigit():
        raise BillMalformed(f"{column}: {text!r} is not C/D and 12 digits", code="bill_bad_amount")
    return text[0], int(text[1:])


def _fen(text: str, column: str) -> int:
    if not text.isdigit():
        raise BillMalformed(f"{column}: {text!r} is not an amount", code="bill_bad_amount")
    return int(text)


def _time(text: str, day: date) -> datetime:
    """``MMDDhhmmss`` near ``day`` (a transaction of 31 Dec in the bill of 1 Jan)."""
    try:
        month = int(text[:2])
        year = day.year - 1 if month > day.month else day.year
        return datetime.strptime(f"{year}{text}", "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise BillMalformed(f"交易传输时间: {text!r} is not a time", code="bill_bad_time") from None


def _our_id(text: str, column: str) -> str:
    try:
        return transformers.our_id(text)
    except ValueError:
        raise BillMalformed(
            f"{column}: {text!r} is not one of our ids", code="bill_bad_row"
        ) from None


def parse_bill(data: bytes, *, mer_id: str, day: date) -> Bill:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        name = zm_file_name(mer_id, day)
        if name not in archive.namelist():
            raise BillMalformed(f"the bill has no {name}", code="bill_missing_file")
        raw = archive.read(name)
    except zipfile.BadZipFile:
        raise BillMalformed("the bill is not a zip", code="bill_not_a_zip") from None
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        raise BillMalformed("the ZM file is not GBK text", code="bill_bad_encoding") from None
    rows = [split_line(line) for line in text.splitlines() if line.strip()]
    payments_by_query_id: dict[str, str] = {}
    entries: list[BillEntry] = []
    settled = 0
    for row in rows:
        if row["商户代码"] != mer_id:
            raise BillMalformed(f"a row of merchant {row['商户代码']!r}", code="bill_bad_row")
        side, fee = _signed_fen(row["商户手续费"], "商户手续费")
        kind = row["交易类型"]
        if kind not in (transformers.CONSUME, transformers.REFUND, transformers.CONSUME_UNDO):
            raise BillMalformed(f"交易类型 {kind!r} is not read here", code="bill_bad_row")
        # A consumption's fee is taken (D), a refund's or undo's given back (C).
        if fee and side != ("D" if kind == transformers.CONSUME else "C"):
            raise BillMalformed(
                f"商户手续费 {row['商户手续费']!r} on 交易类型 {kind}", code="bill_bad_amount"
            )
        credit, settle = _signed_fen(row["结算金额"], "结算金额")
        settled += settle if credit == "C" else -settle
        amount = _fen(row["交易金额"], "交易金额")
        at = _time(row["交易传输时间"], day)
        match kind:
            case transformers.CONSUME:
                payment_id = _our_id(row["商户订单号"], "商户订单号")
                payments_by_query_id[row["查询流水号"]] = payment_id
                entries.append(
                    BillEntry(
                        kind=EntryKind.PAYMENT,
                        payment_id=payment_id,
                        channel_trade_no=row["查询流水号"],
                        amount=amount,
                        fee=fee,
                        currency=transformers.CURRENCY,
                        occurred_at=at,
                        status=row["交易代码"],
                    )
                )
            case transformers.REFUND | transformers.CONSUME_UNDO:
                original = row["原交易查询流水号"]
                entries.append(
                    BillEntry(
                        kind=EntryKind.REFUND,
                        payment_id=payments_by_query_id.get(original, ""),
                        channel_trade_no=original,
                        amount=amount,
                        fee=fee,
                        currency=transformers.CURRENCY,
                        occurred_at=at,
                        status=row["交易代码"],
                        refund_id=_our_id(row["商户订单号"], "商户订单号"),
                        channel_refund_no=row["查询流水号"],
                    )
                )
            case _:  # pragma: no cover - refused above
                raise AssertionError(kind)
    return Bill(
        channel="unionpay",
        account=mer_id,
        day=day,
        currency=transformers.CURRENCY,
        entries=tuple(entries),
        totals=totals_of(entries),
        digest=hashlib.sha256(data).hexdigest(),
        settled=settled,
        fees_taken=sum(e.fee for e in entries if not e.is_refund)
        - sum(e.fee for e in entries if e.is_refund),
    )


async def fetch_bill(channel: UnionPayChannel, day: date) -> Bill:
    return parse_bill(await channel.download_statement(day), mer_id=channel.app_id, day=day)
