"""Log masking: the quick tests that skip a substitution never change what is masked."""

from __future__ import annotations

import random
import re

import pytest

from tuition.logs import mask

_LONG_NUMBER = re.compile(r"(?<!\d)(\d{7,15})(\d{4})(?!\d)")
_SECRET = re.compile(r"\b(whsec_|sk_live_|sk_test_|Bearer\s+)[A-Za-z0-9_\-.~+/=]{6,}")
_DB_DETAIL = re.compile(r"(DETAIL:)[^\n]*")


def every_substitution(text: str) -> str:
    """The masking as it was before the quick tests: all three substitutions, always."""
    text = _SECRET.sub(r"\1[hidden]", text)
    text = _DB_DETAIL.sub(r"\1 [hidden]", text)
    return _LONG_NUMBER.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("/v1/orders/ord_01JDZ8X3M4Q5R6S7T8V9W0XYZA/payments", None),
        ("key sk_test_abcdef123 and whsec_0123456789", "key sk_test_[hidden] and whsec_[hidden]"),
        ("Authorization: Bearer\ttok_abcdefgh", "Authorization: Bearer\t[hidden]"),
        ("sk_live_short", None),
        ("card 6222021234567890123", "card ***************0123"),
        ("phone 13812345678", "phone *******5678"),
        ("ten digits 1234567890 stay", None),
        ("twenty digits 12345678901234567890 stay", None),
        ("arabic-indic ١٢٣٤٥٦٧٨٩٠١", "arabic-indic *******٨٩٠١"),
        ("x\nDETAIL:  Key (id)=(secret) exists.\ny", "x\nDETAIL: [hidden]\ny"),
        ("", None),
    ],
)
def test_what_is_masked(text: str, masked: str | None) -> None:
    assert mask(text) == (text if masked is None else masked)
    assert mask(text) == every_substitution(text)


def test_masking_matches_every_substitution_on_random_text() -> None:
    pieces = [
        "sk_", "sk_test_", "sk_live_", "whsec_", "Bearer", "Bearer ", "DETAIL:", "\n", " ",
        "_", "-", "/", "a", "Z", "0", "1234", "9876543", "٣", "x" * 7, "é",
    ]  # fmt: skip
    rng = random.Random(23)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert mask(text) == every_substitution(text), text
