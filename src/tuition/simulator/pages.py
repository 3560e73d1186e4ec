"""The buyer's side of the simulated gateway: a checkout page with Pay and Decline.

Plain HTML forms, no JavaScript. Templates are autoescaped: subject and merchant
strings come from merchants and must not inject markup into the page.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment

from tuition.domain.errors import CurrencyError
from tuition.domain.money import format_amount, get_currency
from tuition.simulator.records import PaymentWireStatus, SimPayment

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{{ gateway }}{% endblock %}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; }
.amount { font-size: 2rem; font-weight: 600; margin: .5rem 0 1.5rem; }
.muted { color: #666; font-size: .9rem; }
form { display: inline; }
button { font-size: 1rem; padding: .6rem 1.4rem; margin-right: .5rem; cursor: pointer; }
.pay { background: #1677ff; color: #fff; border: 0; border-radius: 4px; }
.decline { background: #fff; border: 1px solid #bbb; border-radius: 4px; }
</style>
</head>
<body>
<p class="muted">{{ gateway }} &middot; simulated payment, no real money moves</p>
{% block content %}{% endblock %}
</body>
</html>
"""

_CHECKOUT = """{% extends "layout.html" %}
{% block title %}Pay {{ amount }} {{ payment.currency }}{% endblock %}
{% block content %}
<h1>{{ payment.subject }}</h1>
<div class="amount" data-testid="amount">{{ amount }} {{ payment.currency }}</div>
<p class="muted">Merchant {{ payment.app_id }} &middot; order {{ payment.out_trade_no }}
&middot; trade {{ payment.trade_no }}</p>
{% if payable %}
{# root: where the simulator is mounted (e.g. /simulator), so the forms come back to it. #}
<form method="post" action="{{ root }}/pay/{{ payment.trade_no }}/pay">
  <button class="pay" type="submit" name="action" value="pay">Pay</button>
</form>
<form method="post" action="{{ root }}/pay/{{ payment.trade_no }}/decline">
  <button class="decline" type="submit" name="action" value="decline">Decline</button>
</form>
{% else %}
<p data-testid="status">This payment is {{ payment.status }}.</p>
{% endif %}
{% endblock %}
"""

_RESULT = """{% extends "layout.html" %}
{% block title %}{{ headline }}{% endblock %}
{% block content %}
<h1 data-testid="headline">{{ headline }}</h1>
{% if payment %}
<p>{{ payment.subject }}: {{ amount }} {{ payment.currency }}</p>
<p data-testid="status">Status: {{ payment.status }}</p>
{% endif %}
{% if detail %}<p class="muted">{{ detail }}</p>{% endif %}
{% endblock %}
"""

_env = Environment(
    loader=DictLoader({"layout.html": _LAYOUT, "checkout.html": _CHECKOUT, "result.html": _RESULT}),
    autoescape=True,
)

_HEADLINES = {
    PaymentWireStatus.PAID: "Payment successful",
    PaymentWireStatus.FAILED: "Payment declined",
    PaymentWireStatus.CLOSED: "Payment closed",
    PaymentWireStatus.WAIT_PAY: "Awaiting payment",
}


# What the page calls the gateway the trade was opened through.
_GATEWAYS = {
    "sandbox": "Sandbox gateway",
    "alipay": "Alipay (simulated)",
    "wechatpay": "WeChat Pay (simulated)",
}


def _gateway(payment: SimPayment | None) -> str:
    return _GATEWAYS.get(payment.protocol if payment else "sandbox", "Sandbox gateway")


def display_amount(payment: SimPayment) -> str:
    try:
        return format_amount(payment.amount, get_currency(payment.currency))
    except CurrencyError:
        return str(payment.amount)  # minor units: better than refusing to show the page


def checkout_page(payment: SimPayment, *, root: str = "") -> str:
    return _env.get_template("checkout.html").render(
        payment=payment,
        amount=display_amount(payment),
        payable=payment.status is PaymentWireStatus.WAIT_PAY,
        gateway=_gateway(payment),
        root=root,
    )


def result_page(payment: SimPayment | None, *, detail: str | None = None) -> str:
    headline = _HEADLINES[payment.status] if payment is not None else "Payment not found"
    return _env.get_template("result.html").render(
        payment=payment,
        amount=display_amount(payment) if payment is not None else "",
        headline=headline,
        detail=detail,
        gateway=_gateway(payment),
    )
