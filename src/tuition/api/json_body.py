"""The checks every JSON request body passes before a handler, or a write, sees it.

One place for every ``/v1`` route (``IdempotentRoute`` calls it), so a route added later
is covered without doing anything:

- nesting deeper than ``MAX_DEPTH`` is refused before parsing: Python's parser and every
  walk over the result recurse, and a deep enough document is a ``RecursionError``;
- a string (value or key) holding NUL or a lone surrogate (``"\\udc00"``) is refused:
  PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8, so
  it would be stored and then break every answer that shows it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tuition.domain.errors import InvalidRequest, ValidationFailed

MAX_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENING = frozenset(b"[{")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of this type as JSON (it does when none is set)."""
    if not content_type:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def check_json(body: bytes) -> Any:
    """The parsed body, or a 400 (malformed, too deep) / 422 (bad text) naming the field."""
    _check_depth(body)
    try:
        document = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise InvalidRequest(
            f"the request body is not valid JSON: {exc}", code="malformed_json"
        ) from None
    _check_text(document)
    return document


def _check_depth(body: bytes) -> None:
    # Brackets inside strings do not nest; drop the strings, keep only the brackets.
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidRequest(
                    f"the request body nests deeper than {MAX_DEPTH} levels",
                    code="json_too_deep",
                )
        else:
            depth -= 1


def _check_text(document: Any) -> None:
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _refuse_bad(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _refuse_bad(key, path, is_key=True)
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))


def _refuse_bad(text: str, path: str, *, is_key: bool = False) -> None:
    found = _BAD_TEXT.search(text)
    if found is None:
        return
    what = "NUL characters" if found.group() == "\x00" else "lone UTF-16 surrogates"
    # A bad key is not repeated in the answer (it could not be encoded): name its parent.
    param = path[:200] or None
    subject = f"keys of {path}" if is_key and path else ("keys" if is_key else path or "body")
    raise ValidationFailed(f"{subject[:200]}: text must not contain {what}", param=param)
