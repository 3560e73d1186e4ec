"""UnionPay response codes (应答码 ``respCode`` / ``origRespCode``), mapped exhaustively.

The specification groups its two-character codes and says what each group means:

====================  ==========================================================
``00``, ``A6``        success (``A6``: success with a defect, still paid)
``03`` ``04`` ``05``  outcome unknown or accepted but not finished: query later
``02`` ``06``         system closed or busy: nothing was done, try again later
``70``                the buyer was sent to the payment page and has not finished
``34``                no such transaction (查无此交易)
``01`` ``07``–``09``  other system-side failures
``10``–``29``         the message was malformed, badly signed or repeated
``30``–``59``         business refusals (merchant, permission, amount, the original)
``60``–``69``, ``71``–``99``  the card or the issuer refused; ``98`` file not found
====================  ==========================================================

:func:`classify` turns any of them into one :class:`CodeClass` and raises
:class:`UnknownWireStatus` for anything else (a code that is not two digits or ``A6``).
"""

# ruff: noqa: RUF002  (UnionPay's formats use full-width punctuation)

from __future__ import annotations

import re
from enum import StrEnum

from tuition.domain.errors import ChannelError

_CODE = re.compile(r"[0-9]{2}")


class UnknownWireStatus(ChannelError, ValueError):
    """UnionPay sent a code this adapter does not understand."""

    default_code = "channel_unknown_status"


class CodeClass(StrEnum):
    SUCCESS = "success"
    IN_DOUBT = "in_doubt"  # 03/04/05: query later; never a failure
    NOT_DONE = "not_done"  # 02/06: refused before processing; retrying is safe
    WAITING_BUYER = "waiting_buyer"  # 70: the buyer is on the payment page
    NOT_FOUND = "not_found"  # 34
    FAILED = "failed"  # any other documented code: a definite refusal


def classify(code: str) -> CodeClass:
    if code == "A6":
        return CodeClass.SUCCESS
    if _CODE.fullmatch(code) is None:
        raise UnknownWireStatus(f"unknown UnionPay response code {code!r}")
    match int(code):
        case 0:
            return CodeClass.SUCCESS
        case 3 | 4 | 5:
            return CodeClass.IN_DOUBT
        case 2 | 6:
            return CodeClass.NOT_DONE
        case 70:
            return CodeClass.WAITING_BUYER
        case 34:
            return CodeClass.NOT_FOUND
        case n if 1 <= n <= 99:
            return CodeClass.FAILED
        case _:  # pragma: no cover - two digits are 00..99
            raise UnknownWireStatus(f"unknown UnionPay response code {code!r}")
