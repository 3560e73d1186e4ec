"""WeChat Pay API v3 bills: the trade bill (``GET /v3/bill/tradebill``) and the fund-flow
bill (``GET /v3/bill/fundflowbill``) of one Beijing day.

Each call answers ``{"hash_type": "SHA1", "hash_value", "download_url"}`` (signed); the
file at ``download_url`` is fetched with our Authorization and is itself unsigned: the
signed answer's SHA-1 vouches for it. With ``tar_type=GZIP`` the file comes gzipped and
the hash is of the text inside. The text is UTF-8 CSV whose data fields each start with
a back-quote (`` ` ``, so spreadsheets keep long numbers), one header line, the rows,
then a summary header and one summary row::

    交易时间,公众账号ID,商户号,…,微信订单号,商户订单号,…,交易状态,…,应结订单金额,…,
    微信退款单号,商户退款单号,退款金额,…,退款状态,…,手续费,费率,订单金额,申请退款金额,费率备注
    `2026-11-30 10:00:05,`wx…,`1230000109,…,`SUCCESS,…,`88.80,…,`0.53000,`0.60%,`88.80,`0.00,`
    总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
    `1,`88.80,`0.00,`0.00,`0.53000,`88.80,`0.00

    记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),
    资金变更提交申请人,备注,业务凭证号
    资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额

A refund row has ``交易状态`` ``REFUND``, its ``商户退款单号`` (our refund id), the
``退款金额`` and a negative ``手续费`` (the fee given back). The parsers are pure; a bad
hash, a truncated or unknown layout, a total that does not add up raises
:class:`~tuition.domain.reconciliation.BillMalformed`.
"""

# ruff: noqa: RUF001  (the gateways' formats use full-width punctuation)

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

from tuition.channels.base import ChannelTimeout
from tuition.domain.errors import ChannelError
from tuition.domain.reconciliation import (
    Bill,
    BillEntry,
    BillMalformed,
    EntryKind,
    FundFlow,
    parse_beijing_time,
    parse_yuan,
    totals_of,
)

if TYPE_CHECKING:
    from tuition.channels.wechatpay.client import WechatPayChannel

TRADE_COLUMNS = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
TRADE_SUMMARY = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)
FLOW_COLUMNS = (
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
)
FLOW_SUMMARY = ("资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额")
# Fund-flow lines that are the day's trading (the rest, e.g. 提现, move the merchant's
# own money to its bank and are reported, not settled again).
SETTLING = frozenset({"交易", "退款", "扣除交易手续费"})
_FEE_PLACES = 5
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TradeBill:
    entries: tuple[BillEntry, ...]
    account: str | None


async def fetch_bill(channel: WechatPayChannel, day: date) -> Bill:
    """Both bills of ``day``, gzipped, hash-checked and parsed into one :class:`Bill`."""
    base = {"bill_date": day.isoformat(), "tar_type": "GZIP"}
    trade_raw = await download(channel, "/v3/bill/tradebill", {**base, "bill_type": "ALL"})
    flow_raw = await download(channel, "/v3/bill/fundflowbill", {**base, "account_type": "BASIC"})
    return combine(
        day,
        channel=channel.slug,
        account=channel.app_id,
        trade=parse_trade_bill(trade_raw),
        flows=parse_fundflow_bill(flow_raw),
        digest=hashlib.sha256(trade_raw + b"\0" + flow_raw).hexdigest(),
    )


async def download(channel: WechatPayChannel, path: str, query: dict[str, str]) -> bytes:
    """One bill's text: the signed URL answer, the file, gunzipped, checked by its hash."""
    answer = await channel._call("GET", f"{path}?{urlencode(query)}")
    url = httpx.URL(str(answer.get("download_url", "")))
    if url.host != httpx.URL(channel._config.base_url).host:
        # Our Authorization header goes with the download; never to another host.
        raise ChannelTimeout(f"WeChat Pay's bill download_url points at {url.host!r}")
    response = await channel._send(channel._signed_request("GET", str(url), None), "bill")
    if response.status_code != 200:
        raise ChannelError(
            f"WeChat Pay bill download answered HTTP {response.status_code}",
            code=f"http_{response.status_code}",
        )
    text = gunzip(response.content) if query.get("tar_type") == "GZIP" else response.content
    check_hash(text, str(answer.get("hash_type", "")), str(answer.get("hash_value", "")))
    return text


def gunzip(content: bytes) -> bytes:
    if len(content) > _MAX_BYTES:
        raise BillMalformed("the WeChat Pay bill is too large", code="bill_too_large")
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise BillMalformed(
            f"the WeChat Pay bill is not readable gzip: {exc}", code="bill_bad_archive"
        ) from None


def check_hash(text: bytes, hash_type: str, hash_value: str) -> None:
    actual = hashlib.sha1(text, usedforsecurity=False).hexdigest()
    if hash_type != "SHA1" or not hmac.compare_digest(hash_value.lower(), actual):
        raise BillMalformed(
            "the WeChat Pay bill does not match its hash", code="bill_hash_mismatch"
        )


def combine(
    day: date,
    *,
    channel: str,
    account: str,
    trade: TradeBill,
    flows: Sequence[FundFlow],
    digest: str,
) -> Bill:
    for entry in trade.entries:
        if entry.occurred_at.date() != day:
            raise BillMalformed(
                f"the trade bill holds a row of {entry.occurred_at.date().isoformat()}, "
                f"not {day.isoformat()}",
                code="bill_wrong_day",
            )
    totals = totals_of(trade.entries)
    return Bill(
        channel=channel,
        account=trade.account or account,
        day=day,
        currency="CNY",
        entries=trade.entries,
        totals=totals,
        digest=digest,
        settled=sum(f.amount for f in flows if f.business in SETTLING),
        fees_taken=totals.fees,
        flows=tuple(flows),
    )


# -- the trade bill -------------------------------------------------------------------------


def parse_trade_bill(text: bytes) -> TradeBill:
    rows, summary = _table(text, TRADE_COLUMNS, TRADE_SUMMARY, "trade")
    entries = tuple(_trade_entry(row, n) for n, row in enumerate(rows, 1))
    totals = totals_of(entries)
    stated = (
        _count(summary["总交易单数"]),
        parse_yuan(summary["应结订单总金额"], "应结订单总金额"),
        parse_yuan(summary["退款总金额"], "退款总金额"),
        parse_yuan(summary["手续费总金额"], "手续费总金额", places=_FEE_PLACES),
    )
    actual = (len(entries), totals.payment_amount, totals.refund_amount, totals.fees)
    if stated != actual:
        raise BillMalformed(
            f"the trade bill's summary says {stated}, its rows add up to {actual}",
            code="bill_totals_mismatch",
        )
    accounts = {row["商户号"] for row in rows}
    return TradeBill(entries, accounts.pop() if len(accounts) == 1 else None)


def _trade_entry(row: dict[str, str], n: int) -> BillEntry:
    state = row["交易状态"]
    if not row["商户订单号"] or not row["微信订单号"]:
        raise BillMalformed(f"trade bill row {n} has no order numbers", code="bill_bad_row")
    fee = parse_yuan(row["手续费"] or "0", "手续费", places=_FEE_PLACES)
    at = parse_beijing_time(row["交易时间"], "交易时间")
    currency = row["货币种类"] or "CNY"
    if state == "REFUND":
        if not row["商户退款单号"]:
            raise BillMalformed(f"refund row {n} has no 商户退款单号", code="bill_bad_row")
        return BillEntry(
            kind=EntryKind.REFUND,
            payment_id=row["商户订单号"],
            channel_trade_no=row["微信订单号"],
            amount=parse_yuan(row["退款金额"], "退款金额"),
            fee=-fee,
            currency=currency,
            occurred_at=at,
            succeeded=row["退款状态"] == "SUCCESS",
            status=row["退款状态"] or state,
            refund_id=row["商户退款单号"],
            channel_refund_no=row["微信退款单号"] or None,
        )
    if state not in ("SUCCESS", "REVOKED"):
        raise BillMalformed(f"trade bill row {n}: unknown 交易状态 {state!r}", code="bill_bad_row")
    return BillEntry(
        kind=EntryKind.PAYMENT,
        payment_id=row["商户订单号"],
        channel_trade_no=row["微信订单号"],
        amount=parse_yuan(row["订单金额"], "订单金额"),
        fee=fee,
        currency=currency,
        occurred_at=at,
        succeeded=state == "SUCCESS",
        status=state,
    )


# -- the fund-flow bill ---------------------------------------------------------------------


def parse_fundflow_bill(text: bytes) -> list[FundFlow]:
    rows, summary = _table(text, FLOW_COLUMNS, FLOW_SUMMARY, "fund-flow")
    flows = []
    for n, row in enumerate(rows, 1):
        direction = row["收支类型"]
        if direction not in ("收入", "支出"):
            raise BillMalformed(
                f"fund-flow row {n}: unknown 收支类型 {direction!r}", code="bill_bad_row"
            )
        amount = parse_yuan(row["收支金额(元)"], "收支金额(元)")
        flows.append(
            FundFlow(
                occurred_at=parse_beijing_time(row["记账时间"], "记账时间"),
                reference=row["微信支付业务单号"],
                flow_no=row["资金流水单号"],
                business=row["业务类型"],
                amount=amount if direction == "收入" else -amount,
            )
        )
    income = [f.amount for f in flows if f.amount >= 0]
    spent = [-f.amount for f in flows if f.amount < 0]
    stated = (
        _count(summary["资金流水总笔数"]),
        _count(summary["收入笔数"]),
        parse_yuan(summary["收入金额"], "收入金额"),
        _count(summary["支出笔数"]),
        parse_yuan(summary["支出金额"], "支出金额"),
    )
    actual = (len(flows), len(income), sum(income), len(spent), sum(spent))
    if stated != actual:
        raise BillMalformed(
            f"the fund-flow summary says {stated}, its rows add up to {actual}",
            code="bill_totals_mismatch",
        )
    return flows


# -- the layout both share ------------------------------------------------------------------


def _table(
    text: bytes, columns: Sequence[str], summary_columns: Sequence[str], what: str
) -> tuple[list[dict[str, str]], dict[str, str]]:
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillMalformed(
            f"the {what} bill is not UTF-8 text (byte {exc.start})", code="bill_bad_encoding"
        ) from None
    lines = [line for line in decoded.splitlines() if line.strip()]
    parsed = list(csv.reader(lines))
    if not parsed:
        raise BillMalformed(f"the {what} bill is empty", code="bill_truncated")
    header = tuple(_header_cell(cell) for cell in parsed[0])
    _same_columns(header, columns)
    marker = [
        n
        for n, cells in enumerate(parsed)
        if cells and _header_cell(cells[0]) == summary_columns[0]
    ]
    if len(marker) != 1 or marker[0] + 2 != len(parsed):
        raise BillMalformed(
            f"the {what} bill lacks its summary (truncated?)", code="bill_truncated"
        )
    summary_header = tuple(_header_cell(cell) for cell in parsed[marker[0]])
    _same_columns(summary_header, summary_columns)
    rows = [_record(header, cells, n) for n, cells in enumerate(parsed[1 : marker[0]], 1)]
    return rows, _record(summary_header, parsed[-1], len(parsed))


def _header_cell(cell: str) -> str:
    return cell.strip().lstrip("`").replace("（", "(").replace("）", ")")


def _same_columns(header: Sequence[str], expected: Sequence[str]) -> None:
    unknown = [c for c in header if c not in expected]
    missing = [c for c in expected if c not in header]
    if unknown or missing:
        raise BillMalformed(
            f"unexpected bill columns: unknown {unknown}, missing {missing}",
            code="bill_unknown_columns",
        )


def _record(header: Sequence[str], cells: Sequence[str], n: int) -> dict[str, str]:
    if len(cells) != len(header):
        raise BillMalformed(
            f"bill line {n} has {len(cells)} fields, its header {len(header)}", code="bill_bad_row"
        )
    values = {}
    for name, cell in zip(header, cells, strict=True):
        if not cell.startswith("`"):
            raise BillMalformed(f"bill line {n}: {name} lacks its back-quote", code="bill_bad_row")
        values[name] = cell[1:].strip()
    return values


def _count(text: str) -> int:
    if not text.isdigit():
        raise BillMalformed(f"{text!r} is not a count", code="bill_bad_amount")
    return int(text)
