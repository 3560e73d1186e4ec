"""The simulator's bill files as text: Alipay's GBK CSVs and WeChat Pay's back-quoted bills,
written from :class:`Row` values (see :mod:`tuition.simulator.bills`)."""

# ruff: noqa: RUF001  (the gateways' formats use full-width punctuation)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from tuition.channels.alipay import bills as alipay_format
from tuition.channels.wechatpay import bills as wechat_format
from tuition.domain.reconciliation import BEIJING

_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(slots=True)
class Row:
    """One bill row, in the gateway's terms (minor units; ``fee`` >= 0)."""

    kind: str  # "payment" or "refund"
    app_id: str
    out_trade_no: str
    trade_no: str
    amount: int
    fee: int
    at: datetime
    subject: str = ""
    method: str = ""
    payment_amount: int = 0
    status: str = "SUCCESS"
    out_refund_no: str = ""
    refund_no: str = ""
    created_at: datetime | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.out_refund_no or self.out_trade_no


# -- the formats ----------------------------------------------------------------------------


def yuan(fen: int, places: int = 2) -> str:
    value = Decimal(fen) / 100
    return f"{value:.{places}f}"


def _bj(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime(_TIME)


def _csv_line(cells: Sequence[str]) -> str:
    return ",".join(cells)


def _alipay_head(title: str, app_id: str, day: date) -> list[str]:
    nxt = day + timedelta(days=1)
    return [
        title,
        f"#账号：[{app_id}]",
        f"#起始日期：[{day:%Y}年{day:%m}月{day:%d}日 00:00:00]   "
        f"终止日期：[{nxt:%Y}年{nxt:%m}月{nxt:%d}日 00:00:00]",
    ]


def alipay_detail(app_id: str, day: date, rows: Sequence[Row], now: datetime) -> str:
    lines = _alipay_head(alipay_format.DETAIL_TITLE, app_id, day)
    lines += [alipay_format.DETAIL_START, _csv_line(alipay_format.DETAIL_COLUMNS)]
    for row in rows:
        refund = row.kind == "refund"
        received = -row.amount if refund else row.amount
        cells = {
            "支付宝交易号": row.trade_no + "\t",
            "商户订单号": row.out_trade_no + "\t",
            "业务类型": "退款" if refund else "交易",
            "商品名称": row.subject.replace(",", " "),
            "创建时间": _bj(row.created_at or row.at),
            "完成时间": _bj(row.at),
            "对方账户": "buy***@example.com",
            "订单金额（元）": yuan(row.payment_amount),
            "商家实收（元）": yuan(received),
            "退款批次号/请求号": row.out_refund_no + ("\t" if refund else ""),
            "服务费（元）": yuan(row.fee if refund else -row.fee),
        }
        lines.append(
            _csv_line(
                [
                    cells.get(c, "0.00" if c.endswith("（元）") else "")
                    for c in alipay_format.DETAIL_COLUMNS
                ]
            )
        )
    pays = [r for r in rows if r.kind == "payment"]
    refunds = [r for r in rows if r.kind == "refund"]
    lines += [
        alipay_format.DETAIL_END,
        f"#交易合计：{len(pays)}笔，商家实收共{yuan(sum(r.amount for r in pays))}元，"
        "商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(-sum(r.amount for r in refunds))}元，"
        "商家优惠退款共0.00元",
        f"#导出时间：[{now.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
    ]
    return "\r\n".join(lines) + "\r\n"


def alipay_summary(app_id: str, day: date, rows: Sequence[Row], now: datetime) -> str:
    pays = [r for r in rows if r.kind == "payment"]
    refunds = [r for r in rows if r.kind == "refund"]
    received = sum(r.amount for r in pays) - sum(r.amount for r in refunds)
    fees = sum(r.fee for r in pays) - sum(r.fee for r in refunds)
    lines = _alipay_head(alipay_format.SUMMARY_TITLE, app_id, day)
    lines += [alipay_format.SUMMARY_START, _csv_line(alipay_format.SUMMARY_COLUMNS)]
    total = {
        "门店名称": "合计",
        "交易订单总笔数": str(len(pays)),
        "退款订单总笔数": str(len(refunds)),
        "订单金额（元）": yuan(sum(r.amount for r in pays)),
        "商家实收（元）": yuan(received),
        "服务费（元）": yuan(-fees),
        "实收净额（元）": yuan(received - fees),
    }
    lines.append(
        _csv_line(
            [
                total.get(c, "0.00" if c.endswith("（元）") else "")
                for c in alipay_format.SUMMARY_COLUMNS
            ]
        )
    )
    lines += [
        alipay_format.SUMMARY_END,
        f"#导出时间：[{now.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
    ]
    return "\r\n".join(lines) + "\r\n"


def _quoted(cells: Sequence[str]) -> str:
    return ",".join("`" + cell for cell in cells)


_WECHAT_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "h5": "MWEB"}


def wechat_trade(mchid: str, rows: Sequence[Row]) -> str:
    lines = [_csv_line(wechat_format.TRADE_COLUMNS)]
    for row in rows:
        refund = row.kind == "refund"
        cells = {
            "交易时间": _bj(row.at),
            "公众账号ID": row.details.get("appid", ""),
            "商户号": mchid,
            "特约商户号": "0",
            "微信订单号": row.trade_no,
            "商户订单号": row.out_trade_no,
            "用户标识": row.details.get("openid", ""),
            "交易类型": _WECHAT_TYPES.get(row.method, "NATIVE"),
            "交易状态": "REFUND" if refund else row.status,
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "应结订单金额": yuan(0 if refund else row.amount),
            "代金券金额": "0.00",
            "微信退款单号": row.refund_no if refund else "0",
            "商户退款单号": row.out_refund_no if refund else "0",
            "退款金额": yuan(row.amount if refund else 0),
            "充值券退款金额": "0.00",
            "退款类型": "ORIGINAL" if refund else "",
            "退款状态": row.status if refund else "",
            "商品名称": row.subject.replace(",", " "),
            "手续费": yuan(-row.fee if refund else row.fee, 5),
            "费率": "0.60%",
            "订单金额": yuan(row.payment_amount if refund else row.amount),
            "申请退款金额": yuan(row.amount if refund else 0),
        }
        lines.append(_quoted([cells.get(c, "") for c in wechat_format.TRADE_COLUMNS]))
    pays = [r for r in rows if r.kind == "payment" and r.status == "SUCCESS"]
    refunds = [r for r in rows if r.kind == "refund" and r.status == "SUCCESS"]
    fees = sum(r.fee for r in pays) - sum(r.fee for r in refunds)
    lines.append(_csv_line(wechat_format.TRADE_SUMMARY))
    lines.append(
        _quoted(
            [
                str(len(rows)),
                yuan(sum(r.amount for r in pays)),
                yuan(sum(r.amount for r in refunds)),
                "0.00",
                yuan(fees, 5),
                yuan(sum(r.amount for r in pays)),
                yuan(sum(r.amount for r in refunds)),
            ]
        )
    )
    return "\r\n".join(lines) + "\r\n"


def wechat_fundflow(rows: Sequence[Row]) -> str:
    lines = [_csv_line(wechat_format.FLOW_COLUMNS)]
    balance = 0
    flows: list[tuple[Row, str, str, int, str]] = []
    for row in rows:
        if row.status != "SUCCESS":
            continue
        if row.kind == "payment":
            flows.append((row, "交易", "交易", row.amount, ""))
            if row.fee:
                flows.append((row, "交易", "扣除交易手续费", -row.fee, ""))
        else:
            note = f"退款总金额{yuan(row.amount)}元;含手续费{yuan(row.fee)}元"
            flows.append((row, "退款", "退款", -(row.amount - row.fee), note))
    income = spent = 0
    incomes = spends = 0
    for n, (row, name, business, amount, note) in enumerate(flows, 1):
        balance += amount
        if amount >= 0:
            income, incomes = income + amount, incomes + 1
        else:
            spent, spends = spent - amount, spends + 1
        cells = [
            _bj(row.at),
            row.trade_no if row.kind == "payment" else row.refund_no,
            f"{row.at.astimezone(BEIJING):%Y%m%d}{n:010d}",
            name,
            business,
            "收入" if amount >= 0 else "支出",
            yuan(abs(amount)),
            yuan(balance),
            "system",
            note,
            row.out_refund_no or row.out_trade_no,
        ]
        lines.append(_quoted(cells))
    lines.append(_csv_line(wechat_format.FLOW_SUMMARY))
    lines.append(_quoted([str(len(flows)), str(incomes), yuan(income), str(spends), yuan(spent)]))
    return "\r\n".join(lines) + "\r\n"
