"""Field types shared by request bodies and parameters, each bounded and checked once.

Every string is bounded by its column's length; text with NUL or a lone surrogate is
refused for every JSON body already (json_body.py), and ``NoNul`` says so again for
fields that can also arrive another way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate ("\ud800" in JSON) cannot be
    # encoded at all; refusing both here keeps them a 422 rather than a database 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


NoNul = AfterValidator(no_nul)

# The platform's own id for a buyer: ASCII only, so no look-alike letter (a Cyrillic "o",
# U+043E) can make a second customer that reads the same.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"
CustomerId = Annotated[str, Field(min_length=1, max_length=200, pattern=CUSTOMER_ID_PATTERN)]
CustomerIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, pattern=CUSTOMER_ID_PATTERN)
]
CustomerIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=CUSTOMER_ID_PATTERN)]

# YYYY-MM-DDTHH:MM, then anything ISO 8601 allows; pydantic alone also takes Unix numbers.
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_text(value: object) -> object:
    if not isinstance(value, str) or not _ISO_8601.match(value):
        raise PydanticCustomError(
            "datetime_not_iso",
            "must be an ISO 8601 date-time with an offset, such as 2026-11-01T09:00:00+08:00",
        )
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is past the last UTC datetime
        raise ValueError("is out of range") from None


IsoDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    AfterValidator(_in_utc),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

# Metadata: as Stripe's, at most 50 pairs, keys up to 40 characters, values up to 500,
# and 16 KiB in all, so that no list page carries megabytes of it.
MAX_METADATA_KEYS = 50
MAX_METADATA_CHARS = 16 * 1024
MetaKey = Annotated[str, Field(min_length=1, max_length=40), NoNul]
MetaValue = Annotated[str, Field(max_length=500), NoNul]


def _metadata_total(value: dict[str, str]) -> dict[str, str]:
    if sum(len(k) + len(v) for k, v in value.items()) > MAX_METADATA_CHARS:
        raise ValueError(f"keys and values must total at most {MAX_METADATA_CHARS} characters")
    return value


Metadata = Annotated[
    dict[MetaKey, MetaValue],
    Field(
        max_length=MAX_METADATA_KEYS,
        description="Up to 50 string pairs for your own use: keys up to 40 characters, "
        "values up to 500, 16 KiB in all",
    ),
    AfterValidator(_metadata_total),
]
