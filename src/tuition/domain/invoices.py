"""Invoice requests (发票): who may ask, what a tax id must look like, and the states.

A buyer asks for an invoice of a paid order; finance issues it (recording the number,
date and PDF the tax-control system produced) or rejects it with a reason::

    requested ──▶ issued
        └──────▶ rejected

:func:`transition` is the only way a request's status changes; the store applies its
answer with a compare-and-set on the previous status. An issued invoice whose order was
refunded afterwards must be reversed by a red-letter invoice (红冲): :func:`needs_reversal`.

A company's tax id is its 18-character unified social credit code (统一社会信用代码,
GB 32100-2015): 17 characters and a check character computed from them modulo 31.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from enum import StrEnum

from tuition.domain.errors import IllegalTransition, ValidationFailed

# GB 32100-2015 table 1: the digits and the capitals other than I, O, S, V and Z.
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {ch: n for n, ch in enumerate(CREDIT_CODE_CHARS)}
# Weight of position i (1-based) is 3^(i-1) mod 31.
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
CREDIT_CODE_LENGTH = 18

MAX_TITLE = 200
MAX_EMAIL = 254
MAX_NUMBER = 40
MAX_REASON = 500
MAX_PDF_BYTES = 5 * 1024 * 1024
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NUMBER_RE = re.compile(r"[0-9A-Za-z-]{1,40}")


class InvoiceType(StrEnum):
    PERSONAL = "personal"
    COMPANY = "company"


class InvoiceStatus(StrEnum):
    REQUESTED = "requested"
    ISSUED = "issued"
    REJECTED = "rejected"


TRANSITIONS: Mapping[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.REQUESTED: frozenset({InvoiceStatus.ISSUED, InvoiceStatus.REJECTED}),
    InvoiceStatus.ISSUED: frozenset(),
    InvoiceStatus.REJECTED: frozenset(),
}


def transition(current: InvoiceStatus, target: InvoiceStatus) -> InvoiceStatus:
    """Return ``target`` if a request may move there from ``current``, else raise
    IllegalTransition naming both states."""
    current, target = InvoiceStatus(current), InvoiceStatus(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"an invoice request cannot move from {current} to {target}",
            code="invoice_not_requested",
            param="status",
        )
    return target


def credit_code_check_character(first17: str) -> str:
    """The 18th character of a unified social credit code whose first 17 are given.

    C18 = (31 - sum(value(Ci) * 3^(i-1)) mod 31) mod 31, written with the code's own
    characters (a result of 31 is 0).
    """
    if len(first17) != CREDIT_CODE_LENGTH - 1 or any(ch not in _VALUE for ch in first17):
        raise ValueError("a credit code's first 17 characters come from its character set")
    total = sum(_VALUE[ch] * weight for ch, weight in zip(first17, _WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why ``code`` is not a unified social credit code, or None when it is one."""
    if len(code) != CREDIT_CODE_LENGTH:
        return f"must be {CREDIT_CODE_LENGTH} characters, not {len(code)}"
    bad = sorted({ch for ch in code if ch not in _VALUE})
    if bad:
        return f"has characters a credit code never uses: {''.join(bad)}"
    if credit_code_check_character(code[:17]) != code[17]:
        return "its check character (the last) does not match the first 17"
    return None


def normalise_credit_code(code: str) -> str:
    """Upper case without surrounding blanks: how buyers type it is not our concern."""
    return code.strip().upper()


def check_request(
    type_: InvoiceType, title: str, tax_id: str | None, email: str
) -> tuple[str, str | None, str]:
    """The title, tax id and email of a request, checked; raises ValidationFailed
    naming the field. A company needs its credit code; a person may give none."""
    title = title.strip()
    if not title:
        raise ValidationFailed("title must not be blank", param="title")
    if len(title) > MAX_TITLE:
        raise ValidationFailed(f"title is at most {MAX_TITLE} characters", param="title")
    email = email.strip()
    if len(email) > MAX_EMAIL or not _EMAIL_RE.fullmatch(email):
        raise ValidationFailed("email must be an email address", param="email")
    if tax_id is not None:
        tax_id = normalise_credit_code(tax_id) or None
    if tax_id is None:
        if type_ is InvoiceType.COMPANY:
            raise ValidationFailed(
                "a company invoice needs tax_id, the unified social credit code",
                code="tax_id_missing",
                param="tax_id",
            )
        return title, None, email
    problem = credit_code_problem(tax_id)
    if problem is not None:
        raise ValidationFailed(
            f"tax_id is not a unified social credit code: it {problem}",
            code="tax_id_invalid",
            param="tax_id",
        )
    return title, tax_id, email


def check_issue(number: str, issued_on: date | None, pdf: bytes) -> str:
    """The invoice number of an issue, checked with its date and PDF file."""
    number = number.strip()
    if not _NUMBER_RE.fullmatch(number):
        raise ValidationFailed(
            f"invoice_number is 1 to {MAX_NUMBER} letters, digits or dashes",
            param="invoice_number",
        )
    if issued_on is None:
        raise ValidationFailed("issued_on must be a date (YYYY-MM-DD)", param="issued_on")
    if not pdf.startswith(b"%PDF-"):
        raise ValidationFailed("pdf must be a PDF file", param="pdf")
    if len(pdf) > MAX_PDF_BYTES:
        raise ValidationFailed(f"pdf is at most {MAX_PDF_BYTES} bytes", param="pdf")
    return number


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValidationFailed(f"reason is 1 to {MAX_REASON} characters", param="reason")
    return reason


def needs_reversal(status: InvoiceStatus, issued_amount: int | None, net_paid: int) -> bool:
    """An issued invoice covers more than the order's net paid now: a refund came after
    it, so finance must issue a red-letter invoice (红冲) for the difference."""
    return (
        InvoiceStatus(status) is InvoiceStatus.ISSUED
        and issued_amount is not None
        and net_paid < issued_amount
    )
