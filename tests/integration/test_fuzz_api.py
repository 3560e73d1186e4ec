"""Schemathesis against the in-process app on both engines: no 5xx, no undocumented status.

The cases come from the app's own OpenAPI document, valid and invalid (negative mode),
then a stateful phase that chains calls through the links schemathesis infers (create a
creator, then a product for it, ...). Requests go through the test's httpx client on the
test's own event loop (the engine's connections belong to it); hypothesis runs in a
worker thread and hands each request over. The run is bounded to keep CI time small;
outside the suite the same checks run at a much larger scale.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import status_code_conformance

CASES_PER_OPERATION = 25
STATEFUL_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance]
_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same cases every run: a failure here reproduces
    suppress_health_check=list(HealthCheck),
)


class _Bridge:
    """Sends a schemathesis case through the async client from hypothesis's thread."""

    def __init__(self, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def send(self, case: Any) -> httpx.Response | None:
        kwargs = case.as_transport_kwargs(base_url=str(self.client.base_url))
        try:
            built = self.client.build_request(
                method=kwargs["method"],
                url=kwargs["url"],
                params=kwargs.get("params"),
                headers=self._headers(kwargs.get("headers") or {}),
                cookies=kwargs.get("cookies"),
                content=_content(kwargs),
            )
        except (httpx.HTTPError, UnicodeError, TypeError, ValueError):
            return None  # a request no HTTP client could send (e.g. a non-latin-1 header)
        self.sent += 1
        response = self._run(lambda: self.client.send(built))
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response

    def _headers(self, generated: dict[str, str]) -> httpx.Headers:
        # Schemathesis makes up a bearer token from the security scheme; ours must win,
        # or nearly every case would stop at 401.
        headers = httpx.Headers(generated)
        headers["authorization"] = self.client.headers["authorization"]
        return headers

    def _run(self, make: Callable[[], Coroutine[Any, Any, httpx.Response]]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout=60)


def _content(kwargs: dict[str, Any]) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    return data.encode() if isinstance(data, str) else data


def _operations(app: FastAPI) -> tuple[Any, list[Any]]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    # Only the JSON API: the HTML pages (admin console, checkout) have their own tests.
    return schema, [op for op in operations if op.path.startswith(("/v1/", "/healthz", "/readyz"))]


def _fuzz_each_operation(bridge: _Bridge, operations: list[Any]) -> None:
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @settings(_SETTINGS, max_examples=CASES_PER_OPERATION)
        @given(case=strategy)
        def check(case: Any) -> None:
            response = bridge.send(case)
            if response is not None:
                case.validate_response(response, checks=CHECKS)

        check()


def _fuzz_stateful(bridge: _Bridge, schema: Any) -> None:
    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **_kwargs: Any) -> Any:
            response = bridge.send(case)
            if response is None:
                raise AssertionError(f"schemathesis built an unsendable request: {case!r}")
            return Response.from_any(response)

        def validate_response(self, response: Any, case: Any, **_kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            _SETTINGS, max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None
        ),
    )


async def test_fuzzing_the_api_finds_no_server_error_and_no_undocumented_status(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, str]
) -> None:
    schema, operations = _operations(app)
    assert len(operations) > 20  # the document really lists the API
    bridge = _Bridge(client, asyncio.get_running_loop())
    await asyncio.to_thread(_fuzz_each_operation, bridge, operations)
    await asyncio.to_thread(_fuzz_stateful, bridge, schema)
    print(bridge.sent, sorted(bridge.statuses.items()))  # shown with -s
    assert bridge.sent >= len(operations) * CASES_PER_OPERATION // 2
