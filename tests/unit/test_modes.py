"""Test and live modes: the rules every part of the code relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuition.domain.modes import mode_of_key, notify_url

SRC = Path(__file__).resolve().parents[2] / "src" / "tuition"


def test_a_keys_prefix_names_its_mode() -> None:
    assert mode_of_key("sk_test_abc") == "test"
    assert mode_of_key("sk_live_abc") == "live"
    assert mode_of_key("pk_test_abc") is None
    assert mode_of_key("sk_testabc") is None


@pytest.mark.parametrize(
    ("mode", "url"),
    [
        ("live", "https://pay.example.com/v1/notify/alipay"),
        ("test", "https://pay.example.com/v1/notify/test/alipay"),
    ],
)
def test_each_mode_is_notified_at_its_own_path(mode: str, url: str) -> None:
    assert notify_url("https://pay.example.com/", mode, "alipay") == url  # type: ignore[arg-type]


def test_notification_urls_are_made_in_one_place() -> None:
    """A notify URL built by hand would send test mode's gateways to live mode's path:
    no f-string or concatenation outside domain/modes.py makes one."""
    built = re.compile(
        r"""\bf"[^"\n]*/v1/notify|\bf'[^'\n]*/v1/notify|["']/v1/notify[^"'\n]*["']\s*\+"""
    )
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] != "simulator"
        and str(path.relative_to(SRC)) != "domain/modes.py"
        and built.search(path.read_text())
    ]
    assert offenders == []
    # The check finds what it is for.
    assert built.search('url = f"{base}/v1/notify/{slug}"')
    assert built.search("url = f\"{base.rstrip('/')}/v1/notify/{slug}\"")
    assert built.search("url = '/v1/notify/' + slug")
