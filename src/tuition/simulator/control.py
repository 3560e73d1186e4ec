"""The ``/_control`` API: drive and break the simulator over HTTP (demo, e2e tests).

Unauthenticated by design: the simulator is a test double and must never face the
internet; ``SimulatorConfig.control_enabled=False`` removes these routes.

=============================================  =============================================
``POST /_control/faults``                      ``{"operation", "count", "kind", "applied"}``
``POST /_control/notifications``               any of ``{"delay_seconds", "duplicates",
                                               "concurrent", "drop_next", "tamper_next",
                                               "fail_refunds"}``
``POST /_control/reset``                       clear every fault
``GET  /_control/faults``                      the current fault plan
``POST /_control/payments/{out_trade_no}/pay``  (or ``/decline``; ``?app_id=`` if ambiguous)
``POST /_control/refunds/settle``              settle refunds held by auto_settle_refunds=False
``POST /_control/refunds/next``                ``{"outcome", "count", "seconds"}``: how the
                                               next refunds end (``fail``, ``hold``,
                                               ``delay``, ``abnormal``, ``lost_answer``)
``GET  /_control/refunds/{out_refund_no}``      the refund as the simulator has it
``POST /_control/refunds/{out_refund_no}/settle``  ``{"succeed": true}``: end a held,
                                               delayed or abnormal refund now
``GET  /_control/deliveries``                  the notification delivery log
=============================================  =============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tuition.simulator.faults import FaultKind, Operation
from tuition.simulator.records import GatewayError

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

_Count = Annotated[int, Field(ge=0, le=10_000)]


class _FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Operation
    count: _Count = 1
    kind: FaultKind = FaultKind.ERROR
    applied: bool = False


class _NotificationFaultsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay_seconds: Annotated[float, Field(ge=0, le=3600)] | None = None
    duplicates: _Count | None = None
    concurrent: bool | None = None
    drop_next: _Count | None = None
    tamper_next: _Count | None = None
    fail_refunds: _Count | None = None


class _RefundPlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["fail", "hold", "delay", "abnormal", "lost_answer"]
    count: _Count = 1
    seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0


class _SettleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    succeed: bool = True


def _invalid(exc: ValidationError) -> JSONResponse:
    return JSONResponse({"code": "INVALID_REQUEST", "message": str(exc)}, status_code=400)


def control_routes(sim: Simulator) -> list[Route]:
    async def add_fault(request: Request) -> Response:
        try:
            data = _FaultIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid(exc)
        sim.fail_next(data.operation, data.count, kind=data.kind, applied=data.applied)
        return JSONResponse(sim.faults.describe())

    async def notification_faults(request: Request) -> Response:
        try:
            data = _NotificationFaultsIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid(exc)
        if data.delay_seconds is not None:
            sim.delay_notifications(data.delay_seconds)
        if data.duplicates is not None or data.concurrent is not None:
            sim.duplicate_notifications(
                sim.faults.duplicates if data.duplicates is None else data.duplicates,
                concurrent=bool(data.concurrent),
            )
        if data.drop_next is not None:
            sim.drop_next_notifications(data.drop_next)
        if data.tamper_next is not None:
            sim.tamper_next_notifications(data.tamper_next)
        if data.fail_refunds is not None:
            sim.fail_next_refunds(data.fail_refunds)
        return JSONResponse(sim.faults.describe())

    async def reset(_request: Request) -> Response:
        sim.reset_faults()
        return JSONResponse(sim.faults.describe())

    async def show_faults(_request: Request) -> Response:
        return JSONResponse(sim.faults.describe())

    async def decide(request: Request, decision: str) -> Response:
        out_trade_no = str(request.path_params["out_trade_no"])
        app_id = request.query_params.get("app_id")
        try:
            if decision == "pay":
                payment = await sim.pay(out_trade_no, app_id=app_id)
            else:
                payment = await sim.decline(out_trade_no, app_id=app_id)
        except GatewayError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
        return JSONResponse(payment.to_wire(sim.state.refunded_amount(payment)))

    async def pay(request: Request) -> Response:
        return await decide(request, "pay")

    async def decline(request: Request) -> Response:
        return await decide(request, "decline")

    async def settle(_request: Request) -> Response:
        return JSONResponse({"settled": await sim.settle_refunds()})

    async def plan_refunds(request: Request) -> Response:
        try:
            data = _RefundPlanIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid(exc)
        match data.outcome:
            case "fail":
                sim.fail_next_refunds(sim.faults.failing_refunds + data.count)
            case "hold":
                sim.hold_next_refunds(data.count)
            case "delay":
                sim.delay_next_refunds(data.seconds, data.count)
            case "abnormal":
                sim.abnormal_next_refunds(data.count)
            case "lost_answer":
                sim.lose_next_refund_answers(data.count)
        return JSONResponse(sim.faults.describe())

    async def show_refund(request: Request) -> Response:
        try:
            refund = sim.refund(
                str(request.path_params["out_refund_no"]),
                app_id=request.query_params.get("app_id"),
            )
        except GatewayError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
        return JSONResponse({**refund.to_wire(), "gateway_status": str(refund.status)})

    async def settle_refund(request: Request) -> Response:
        try:
            body = await request.body()
            data = _SettleIn.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return _invalid(exc)
        try:
            refund = await sim.settle_refund(
                str(request.path_params["out_refund_no"]),
                succeed=data.succeed,
                app_id=request.query_params.get("app_id"),
            )
        except GatewayError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
        return JSONResponse({**refund.to_wire(), "gateway_status": str(refund.status)})

    async def deliveries(_request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "notify_id": d.notify_id,
                    "event": d.event,
                    "url": d.url,
                    "copy": d.copy,
                    "attempt": d.attempt,
                    "waited": d.waited,
                    "accepted": d.accepted,
                    "status_code": d.status_code,
                    "error": d.error,
                    "dropped": d.dropped,
                    "tampered": d.tampered,
                }
                for d in sim.deliveries
            ]
        )

    return [
        Route("/_control/faults", add_fault, methods=["POST"]),
        Route("/_control/faults", show_faults, methods=["GET"]),
        Route("/_control/notifications", notification_faults, methods=["POST"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/payments/{out_trade_no}/pay", pay, methods=["POST"]),
        Route("/_control/payments/{out_trade_no}/decline", decline, methods=["POST"]),
        Route("/_control/refunds/settle", settle, methods=["POST"]),
        Route("/_control/refunds/next", plan_refunds, methods=["POST"]),
        Route("/_control/refunds/{out_refund_no}", show_refund, methods=["GET"]),
        Route("/_control/refunds/{out_refund_no}/settle", settle_refund, methods=["POST"]),
        Route("/_control/deliveries", deliveries, methods=["GET"]),
    ]
