"""Buyer routes: ``GET /pay/{trade_no}`` and its ``pay`` / ``decline`` form posts.

After a decision the buyer is sent (303) to the merchant's return_url when there is one,
as a real gateway does; otherwise a result page is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tuition.simulator.pages import checkout_page, result_page
from tuition.simulator.records import GatewayError

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator


def buyer_routes(sim: Simulator) -> list[Route]:
    async def show(request: Request) -> Response:
        try:
            payment = sim.state.by_trade_no(str(request.path_params["trade_no"]))
        except GatewayError:
            return HTMLResponse(result_page(None), status_code=404)
        # WeChat Pay's H5 page takes where to send the buyer afterwards as redirect_url.
        redirect_url = request.query_params.get("redirect_url", "")
        if payment.return_url is None and redirect_url.startswith(("http://", "https://")):
            payment.return_url = redirect_url
        return HTMLResponse(checkout_page(payment, root=request.scope.get("root_path", "")))

    async def decide(request: Request, decision: str) -> Response:
        try:
            payment = sim.state.by_trade_no(str(request.path_params["trade_no"]))
        except GatewayError:
            return HTMLResponse(result_page(None), status_code=404)
        try:
            if decision == "pay":
                sim.state.pay(payment)
            else:
                sim.state.decline(payment)
        except GatewayError as exc:
            # Paying twice, or after expiry: show where the payment stands instead.
            return HTMLResponse(result_page(payment, detail=exc.message), status_code=409)
        if payment.return_url:
            return RedirectResponse(payment.return_url, status_code=303)
        return HTMLResponse(result_page(payment))

    async def pay(request: Request) -> Response:
        return await decide(request, "pay")

    async def decline(request: Request) -> Response:
        return await decide(request, "decline")

    return [
        Route("/pay/{trade_no}", show, methods=["GET"]),
        Route("/pay/{trade_no}/pay", pay, methods=["POST"]),
        Route("/pay/{trade_no}/decline", decline, methods=["POST"]),
    ]
