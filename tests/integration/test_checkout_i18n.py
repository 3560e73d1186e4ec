"""The pages' translations: every message shown has a Chinese translation with the same
placeholders, and the language is picked the way browsers expect."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tuition.web import i18n

WEB = i18n.LOCALE_DIR.parent
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _source_messages() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "N_": None, "gettext_for": (2,)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        WEB, method_map, options, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_on_the_pages_has_a_chinese_translation() -> None:
    with (i18n.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale="zh_CN")
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    messages = _source_messages()
    assert len(messages) > 150
    missing = sorted(messages - translated.keys())
    assert missing == [], f"translate these in zh_CN/messages.po: {missing}"
    for message in messages:
        assert set(_PLACEHOLDER.findall(message)) == set(
            _PLACEHOLDER.findall(translated[message])
        ), message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        ("zh-Hans-CN", "zh_CN"),
        ("zh-TW", "zh_CN"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR, en;q=0.5, zh;q=0.4", "en"),
        ("fr-FR, zh;q=0.8, en;q=0.5", "zh_CN"),
        ("de, fr", None),
        ("zh;q=0, en", "en"),
        ("", None),
        ("en;q=oops, zh", "zh_CN"),
    ],
)
def test_accept_language_picks_the_preferred_language_we_have(
    header: str, expected: str | None
) -> None:
    assert i18n.from_accept_language(header) == expected


def test_amounts_are_written_as_readers_of_each_language_expect() -> None:
    assert i18n.Formatter("zh_CN").money(23840, "CNY") == "¥238.40"
    assert i18n.Formatter("en").money(23840, "CNY") == "CN¥238.40"
    assert i18n.Formatter("en").money(1500, "JPY") == "¥1,500"
    assert i18n.Formatter("en").money(-1000, "USD") == "-$10.00"
    assert i18n.Formatter("en").money(None, "CNY") == "—"
