"""The unified social credit code check (GB 32100-2015) and the invoice state machine."""

from __future__ import annotations

import pytest

from tuition.domain.errors import IllegalTransition, ValidationFailed
from tuition.domain.invoices import (
    InvoiceStatus,
    InvoiceType,
    check_request,
    credit_code_check_character,
    credit_code_problem,
    needs_reversal,
    transition,
)

VALID = ["91350100M000100Y43", "91110000600037341L", "91440300708461136T"]


@pytest.mark.parametrize("code", VALID)
def test_a_published_credit_code_passes_the_check(code: str) -> None:
    assert credit_code_problem(code) is None
    assert credit_code_check_character(code[:17]) == code[17]


def test_a_wrong_check_character_is_named() -> None:
    problem = credit_code_problem("91350100M000100Y44")
    assert problem is not None
    assert "check character" in problem


@pytest.mark.parametrize("code", ["91350100M000100Y4", "91350100M000100Y433", ""])
def test_a_code_of_the_wrong_length_is_refused(code: str) -> None:
    problem = credit_code_problem(code)
    assert problem is not None
    assert "18 characters" in problem


def test_letters_a_credit_code_never_uses_are_refused() -> None:
    problem = credit_code_problem("91350100M000100I43")
    assert problem is not None
    assert "I" in problem


def test_a_check_result_of_31_is_written_as_zero() -> None:
    # Find a 17-character body whose weighted sum is 0 mod 31: its check is "0".
    assert credit_code_check_character("0" * 17) == "0"


def test_a_company_request_needs_a_valid_tax_id_and_names_the_field() -> None:
    with pytest.raises(ValidationFailed) as missing:
        check_request(InvoiceType.COMPANY, "ACME", None, "a@b.cn")
    assert (missing.value.code, missing.value.param) == ("tax_id_missing", "tax_id")
    with pytest.raises(ValidationFailed) as bad:
        check_request(InvoiceType.COMPANY, "ACME", "91350100M000100Y44", "a@b.cn")
    assert (bad.value.code, bad.value.param) == ("tax_id_invalid", "tax_id")
    assert check_request(InvoiceType.COMPANY, " ACME ", "91350100m000100y43", "a@b.cn") == (
        "ACME",
        "91350100M000100Y43",
        "a@b.cn",
    )


def test_a_personal_request_may_omit_the_tax_id_but_not_a_valid_email() -> None:
    assert check_request(InvoiceType.PERSONAL, "Li Lei", None, "li@x.cn")[1] is None
    with pytest.raises(ValidationFailed) as bad:
        check_request(InvoiceType.PERSONAL, "Li Lei", None, "not-an-email")
    assert bad.value.param == "email"


def test_a_request_is_issued_or_rejected_once_and_never_moves_again() -> None:
    assert transition(InvoiceStatus.REQUESTED, InvoiceStatus.ISSUED) is InvoiceStatus.ISSUED
    assert transition(InvoiceStatus.REQUESTED, InvoiceStatus.REJECTED) is InvoiceStatus.REJECTED
    for done in (InvoiceStatus.ISSUED, InvoiceStatus.REJECTED):
        for target in InvoiceStatus:
            with pytest.raises(IllegalTransition):
                transition(done, target)


def test_an_issued_invoice_needs_reversal_once_the_order_nets_less() -> None:
    assert not needs_reversal(InvoiceStatus.ISSUED, 9900, 9900)
    assert needs_reversal(InvoiceStatus.ISSUED, 9900, 4900)
    assert not needs_reversal(InvoiceStatus.REQUESTED, None, 0)
