"""The merchant API of the simulated gateway (JSON over HTTP, HMAC-authenticated).

========================================================  =================================
``POST /v1/payments``                                     create (idempotent per out_trade_no)
``GET  /v1/payments/{out_trade_no}``                      query
``POST /v1/payments/{out_trade_no}/close``                close
``POST /v1/payments/{out_trade_no}/refunds``              refund (idempotent per out_refund_no)
``GET  /v1/payments/{out_trade_no}/refunds/{out_refund_no}``  query a refund
``GET  /v1/public-key``                                   gateway key and serial (no auth)
========================================================  =================================

Success is ``200`` with the resource; a refusal is ``4xx {"code", "message"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tuition.domain.money import MAX_AMOUNT
from tuition.simulator.faults import Operation, with_faults
from tuition.simulator.records import GatewayError

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

_REF = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_Ref = Annotated[str, Field(pattern=f"^{_REF.pattern}$")]
_Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
_Url = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^https?://")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CreatePaymentIn(_Input):
    out_trade_no: _Ref
    amount: _Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    subject: Annotated[str, Field(min_length=1, max_length=256)]
    method: Literal["page", "qr"]
    notify_url: _Url
    return_url: _Url | None = None
    expires_at: AwareDatetime


class RefundIn(_Input):
    out_refund_no: _Ref
    amount: _Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    reason: Annotated[str, Field(max_length=256)] = ""
    notify_url: _Url | None = None


_M = TypeVar("_M", bound=_Input)
Action = Callable[[str, bytes], dict[str, object]]


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise GatewayError("INVALID_REQUEST", f"{where}: {first['msg']}") from None


def _ref(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if _REF.fullmatch(value) is None:
        raise GatewayError("INVALID_REQUEST", f"{name} is malformed")
    return value


def request_target(request: Request) -> str:
    # Sign what travelled on the wire (percent-encoded path plus query), as the client did.
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = bytes(raw).decode("latin-1")
    return f"{target}?{bytes(query).decode('latin-1')}" if query else target


def _error(exc: GatewayError) -> JSONResponse:
    return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)


def merchant_routes(sim: Simulator) -> list[Route]:
    async def call(request: Request, operation: Operation, action: Action) -> Response:
        body = await request.body()
        try:
            app_id = sim.authenticator.authenticate(
                request.method, request_target(request), request.headers.get("authorization"), body
            )
        except GatewayError as exc:
            return _error(exc)

        def answer() -> Response:
            try:
                return JSONResponse(action(app_id, body))
            except GatewayError as exc:
                return _error(exc)

        return await with_faults(sim.faults, sim.config, operation, answer)

    async def create_payment(request: Request) -> Response:
        def action(app_id: str, body: bytes) -> dict[str, object]:
            data = _parse(CreatePaymentIn, body)
            payment = sim.state.create_payment(app_id, **data.model_dump())
            return payment.to_wire(sim.state.refunded_amount(payment))

        return await call(request, Operation.CREATE, action)

    async def query_payment(request: Request) -> Response:
        def action(app_id: str, _body: bytes) -> dict[str, object]:
            payment = sim.state.get_payment(app_id, _ref(request, "out_trade_no"))
            return payment.to_wire(sim.state.refunded_amount(payment))

        return await call(request, Operation.QUERY, action)

    async def close_payment(request: Request) -> Response:
        def action(app_id: str, _body: bytes) -> dict[str, object]:
            payment = sim.state.close_payment(app_id, _ref(request, "out_trade_no"))
            return payment.to_wire(sim.state.refunded_amount(payment))

        return await call(request, Operation.CLOSE, action)

    async def refund(request: Request) -> Response:
        def action(app_id: str, body: bytes) -> dict[str, object]:
            data = _parse(RefundIn, body)
            created, is_new = sim.state.create_refund(
                app_id, out_trade_no=_ref(request, "out_trade_no"), **data.model_dump()
            )
            if is_new:
                sim.start_refund(created)
            return created.to_wire()

        return await call(request, Operation.REFUND, action)

    async def query_refund(request: Request) -> Response:
        def action(app_id: str, _body: bytes) -> dict[str, object]:
            found = sim.state.get_refund(
                app_id, _ref(request, "out_trade_no"), _ref(request, "out_refund_no")
            )
            return found.to_wire()

        return await call(request, Operation.REFUND_QUERY, action)

    async def public_key(_request: Request) -> Response:
        return JSONResponse(
            {
                "serial": sim.serial,
                "algorithm": "SHA256-RSA2048-PKCS1v15",
                "public_key_pem": sim.public_key_pem,
            }
        )

    return [
        Route("/v1/payments", create_payment, methods=["POST"]),
        Route("/v1/payments/{out_trade_no}", query_payment, methods=["GET"]),
        Route("/v1/payments/{out_trade_no}/close", close_payment, methods=["POST"]),
        Route("/v1/payments/{out_trade_no}/refunds", refund, methods=["POST"]),
        Route("/v1/payments/{out_trade_no}/refunds/{out_refund_no}", query_refund, methods=["GET"]),
        Route("/v1/public-key", public_key, methods=["GET"]),
    ]
