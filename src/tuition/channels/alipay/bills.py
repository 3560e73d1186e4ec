"""Alipay's daily trade bill (`alipay.data.dataservice.bill.downloadurl.query`, trade).

The download is a zip of GBK-encoded CSV files: the trade detail ``<pid>_<yyyymmdd>_业务明细.csv``
and its summary ``…_业务明细(汇总).csv``. Each file opens with ``#`` header lines (title,
account, the period), has a ``#---…列表---`` line before its column header and a
``#---…列表结束---`` line after its rows, and closes with ``#`` footer lines; the detail's
footer states the totals (``#交易合计：3笔，商家实收共266.40元，…``,
``#退款合计：1笔，商家实收退款共-88.80元，…``)::

    支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,…,订单金额（元）,商家实收（元）,…,
    退款批次号/请求号,服务费（元）,分润（元）,备注

A ``交易`` row is a payment (``服务费`` negative: the fee taken); a ``退款`` row names the
original trade, carries the refund's ``out_request_no``, a negative ``商家实收`` and a
positive ``服务费`` (the fee given back). Fields may be padded with tabs and spaces.
Alipay credits the merchant's balance as each trade completes, so the day's settled
amount is ``商家实收 + 服务费`` over the rows.

:func:`parse_trade_bill` is pure; any defect (not a zip, a missing file, not GBK, an
unknown or missing column, a total that does not add up, another day) raises
:class:`~tuition.domain.reconciliation.BillMalformed` naming it.
"""

# ruff: noqa: RUF001, RUF002  (the gateways' formats use full-width punctuation)

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from tuition.domain.reconciliation import (
    Bill,
    BillEntry,
    BillMalformed,
    BillTotals,
    EntryKind,
    parse_beijing_time,
    parse_yuan,
    totals_of,
)

if TYPE_CHECKING:
    from tuition.channels.alipay.client import AlipayChannel

DETAIL_COLUMNS = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)
SUMMARY_COLUMNS = (
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
)
DETAIL_TITLE = "#支付宝业务明细查询"
SUMMARY_TITLE = "#支付宝业务汇总查询"
DETAIL_START = (
    "#-----------------------------------------业务明细列表----------------------------------------"
)
DETAIL_END = (
    "#-----------------------------------------业务明细列表结束------------------------------------"
)
SUMMARY_START = (
    "#-----------------------------------------业务汇总列表----------------------------------------"
)
SUMMARY_END = (
    "#-----------------------------------------业务汇总列表结束------------------------------------"
)
_ACCOUNT = re.compile(r"^#账号：\[(\d+)\]")
_PERIOD = re.compile(r"^#起始日期：\[(\d{4})年(\d{2})月(\d{2})日")
_TRADE_TOTAL = re.compile(r"^#交易合计：(\d+)笔，商家实收共(-?[\d.]+)元")
_REFUND_TOTAL = re.compile(r"^#退款合计：(\d+)笔，商家实收退款共(-?[\d.]+)元")
_MAX_BYTES = 64 * 1024 * 1024


async def fetch_bill(channel: AlipayChannel, day: date) -> Bill:
    """Download the day's trade bill (signed URL query, then the file) and parse it."""
    content = await channel.download_statement(day)
    return parse_trade_bill(content, day=day, channel=channel.slug, account=channel.app_id)


def parse_trade_bill(content: bytes, *, day: date, channel: str, account: str) -> Bill:
    detail_text, summary_text = _unzip(content)
    detail = _section(detail_text, DETAIL_TITLE, DETAIL_START, DETAIL_END, "业务明细")
    _check_period(detail.header, day)
    entries = tuple(_entry(row, n) for n, row in enumerate(_rows(detail, DETAIL_COLUMNS), 1))
    totals = totals_of(entries)
    _check_footer(detail.footer, entries)
    summary = _section(summary_text, SUMMARY_TITLE, SUMMARY_START, SUMMARY_END, "业务汇总")
    _check_period(summary.header, day)
    _check_summary(_rows(summary, SUMMARY_COLUMNS), entries, totals)
    received = sum(_signed_received(e) for e in entries)
    return Bill(
        channel=channel,
        account=_account(detail.header) or account,
        day=day,
        currency="CNY",
        entries=entries,
        totals=totals,
        digest=hashlib.sha256(content).hexdigest(),
        settled=received - totals.fees,
        fees_taken=totals.fees,
    )


# -- files ----------------------------------------------------------------------------------


def _unzip(content: bytes) -> tuple[str, str]:
    if len(content) > _MAX_BYTES:
        raise BillMalformed("the Alipay bill is too large", code="bill_too_large")
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        files = {_name(info): archive.read(info) for info in archive.infolist()}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise BillMalformed(
            f"the Alipay bill is not a readable zip: {exc}", code="bill_bad_archive"
        ) from None
    summary = [name for name in files if name.endswith("(汇总).csv")]
    detail = [name for name in files if name.endswith("_业务明细.csv")]
    if len(detail) != 1 or len(summary) != 1:
        raise BillMalformed(
            f"the Alipay bill zip holds {sorted(files)}; expected one 业务明细 and one 汇总 file",
            code="bill_files_missing",
        )
    return _decode(files[detail[0]], detail[0]), _decode(files[summary[0]], summary[0])


def _name(info: zipfile.ZipInfo) -> str:
    # Alipay's archives name their files in GBK without the UTF-8 flag, which Python
    # then reads as CP437; names written with the flag are already right.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("gbk")
    except UnicodeDecodeError as exc:
        raise BillMalformed(
            f"{name} is not GBK text (byte {exc.start})", code="bill_bad_encoding"
        ) from None


class _Section:
    def __init__(self, header: list[str], body: list[str], footer: list[str]) -> None:
        self.header, self.body, self.footer = header, body, footer


def _section(text: str, title: str, start: str, end: str, what: str) -> _Section:
    lines = [line.rstrip("\r") for line in text.split("\n")]
    try:
        begin = lines.index(start)
        finish = lines.index(end, begin)
    except ValueError:
        raise BillMalformed(
            f"the {what} file lacks its list markers (truncated?)", code="bill_truncated"
        ) from None
    if not lines or lines[0].strip() != title:
        raise BillMalformed(f"the {what} file does not start with {title}", code="bill_bad_header")
    return _Section(lines[:begin], lines[begin + 1 : finish], lines[finish + 1 :])


def _rows(section: _Section, expected: Sequence[str]) -> list[dict[str, str]]:
    body = [line for line in section.body if line.strip()]
    if not body:
        raise BillMalformed("a bill list has no column header", code="bill_bad_header")
    parsed = list(csv.reader(body))
    header = tuple(cell.strip() for cell in parsed[0])
    unknown = [c for c in header if c not in expected]
    missing = [c for c in expected if c not in header]
    if unknown or missing:
        raise BillMalformed(
            f"unexpected bill columns: unknown {unknown}, missing {missing}",
            code="bill_unknown_columns",
        )
    rows = []
    for n, cells in enumerate(parsed[1:], 1):
        if len(cells) != len(header):
            raise BillMalformed(
                f"bill row {n} has {len(cells)} fields, the header {len(header)}",
                code="bill_bad_row",
            )
        rows.append({name: cell.strip() for name, cell in zip(header, cells, strict=True)})
    return rows


# -- rows -----------------------------------------------------------------------------------


def _entry(row: dict[str, str], n: int) -> BillEntry:
    kind = row["业务类型"]
    if not row["商户订单号"] or not row["支付宝交易号"]:
        raise BillMalformed(f"bill row {n} has no trade numbers", code="bill_bad_row")
    fee = parse_yuan(row["服务费（元）"] or "0", "服务费（元）")
    received = parse_yuan(row["商家实收（元）"], "商家实收（元）")
    at = parse_beijing_time(row["完成时间"] or row["创建时间"], "完成时间")
    match kind:
        case "交易":
            return BillEntry(
                kind=EntryKind.PAYMENT,
                payment_id=row["商户订单号"],
                channel_trade_no=row["支付宝交易号"],
                amount=parse_yuan(row["订单金额（元）"], "订单金额（元）"),
                fee=-fee,
                currency="CNY",
                occurred_at=at,
            )
        case "退款":
            if not row["退款批次号/请求号"]:
                raise BillMalformed(f"refund row {n} has no request number", code="bill_bad_row")
            return BillEntry(
                kind=EntryKind.REFUND,
                payment_id=row["商户订单号"],
                channel_trade_no=row["支付宝交易号"],
                amount=-received,
                fee=fee,
                currency="CNY",
                occurred_at=at,
                refund_id=row["退款批次号/请求号"],
            )
        case _:
            raise BillMalformed(f"bill row {n}: unknown 业务类型 {kind!r}", code="bill_bad_row")


def _signed_received(entry: BillEntry) -> int:
    return -entry.amount if entry.is_refund else entry.amount


def _account(header: list[str]) -> str | None:
    for line in header:
        if m := _ACCOUNT.match(line.strip()):
            return m.group(1)
    return None


def _check_period(header: list[str], day: date) -> None:
    for line in header:
        if m := _PERIOD.match(line.strip()):
            found = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            if found != day:
                raise BillMalformed(
                    f"the bill is for {found.isoformat()}, not {day.isoformat()}",
                    code="bill_wrong_day",
                )
            return
    raise BillMalformed("the bill does not say its period", code="bill_bad_header")


def _check_footer(footer: list[str], entries: Sequence[BillEntry]) -> None:
    trades = [e for e in entries if not e.is_refund]
    refunds = [e for e in entries if e.is_refund]
    seen = 0
    for line in footer:
        for pattern, rows in ((_TRADE_TOTAL, trades), (_REFUND_TOTAL, refunds)):
            if m := pattern.match(line.strip()):
                seen += 1
                stated = (int(m.group(1)), parse_yuan(m.group(2), "合计"))
                actual = (len(rows), sum(_signed_received(e) for e in rows))
                if stated != actual:
                    raise BillMalformed(
                        f"the bill's footer says {stated}, its rows add up to {actual}",
                        code="bill_totals_mismatch",
                    )
    if seen != 2:
        raise BillMalformed("the bill lacks its 合计 footer (truncated?)", code="bill_truncated")


def _check_summary(
    rows: list[dict[str, str]], entries: Sequence[BillEntry], totals: BillTotals
) -> None:
    total = [row for row in rows if row["门店名称"] == "合计"]
    if len(total) != 1:
        raise BillMalformed("the summary has no 合计 row", code="bill_truncated")
    row = total[0]
    stated = (
        int(row["交易订单总笔数"]),
        int(row["退款订单总笔数"]),
        parse_yuan(row["商家实收（元）"], "商家实收（元）"),
        -parse_yuan(row["服务费（元）"], "服务费（元）"),
    )
    actual = (
        totals.payments,
        totals.refunds,
        sum(_signed_received(e) for e in entries),
        totals.fees,
    )
    if stated != actual:
        raise BillMalformed(
            f"the summary says {stated}, the detail adds up to {actual}",
            code="bill_totals_mismatch",
        )
