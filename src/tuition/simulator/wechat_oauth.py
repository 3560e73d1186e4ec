"""The simulator playing WeChat's side of a page inside WeChat: web OAuth and the JSAPI
payment sheet.

============================================================  ============================
``GET /wechat/connect/oauth2/authorize``                     web OAuth, step 1: 302 back
                                                              to ``redirect_uri`` with a
                                                              code (snsapi_base is silent)
``GET /wechat/api/sns/oauth2/access_token``                   step 3: the code, once and
                                                              within 5 minutes, for the
                                                              buyer's openid
``GET /wechatpay/bridge.js``                                  a ``WeixinJSBridge`` for a
                                                              browser that is not WeChat
``GET /wechatpay/jsapi``                                      the payment sheet the bridge
                                                              opens: checks ``paySign``
============================================================  ============================

An official account is known by :meth:`WechatOAuth.add_app` (its appid and AppSecret).
Each appid has one simulated buyer, whose openid is derived from the appid (the same
person has another openid under another account, as on WeChat). Refusals are WeChat's
``{"errcode", "errmsg"}`` with HTTP 200.

The bridge stands in for the WeChat client's ``getBrandWCPayRequest``: it sends the
browser to the sheet with the parameters the page passed; the sheet verifies
``paySign`` (RSA-SHA256 over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` with the
merchant's key, as WeChat does), then shows the simulator's Pay / Decline page for that
trade, which returns the buyer to the page it came from.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tuition.simulator.pages import result_page

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

CODE_TTL = timedelta(minutes=5)
SCOPES = frozenset({"snsapi_base", "snsapi_userinfo"})

_BRIDGE = """(function () {
  "use strict";
  // The simulator's WeixinJSBridge: what the WeChat client does on getBrandWCPayRequest,
  // played by sending the browser to the simulated payment sheet.
  if (window.WeixinJSBridge) { return; }
  var script = document.currentScript;
  var root = script ? script.src.replace(/\\/wechatpay\\/bridge\\.js.*$/, "") : "";
  window.WeixinJSBridge = {
    invoke: function (name, params, callback) {
      if (name !== "getBrandWCPayRequest") {
        if (callback) { callback({err_msg: name + ":fail"}); }
        return;
      }
      var query = [];
      ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"].forEach(function (k) {
        query.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k] || ""));
      });
      query.push("return=" + encodeURIComponent(window.location.href));
      window.location.href = root + "/wechatpay/jsapi?" + query.join("&");
    }
  };
  document.dispatchEvent(new Event("WeixinJSBridgeReady"));
})();
"""


@dataclass(frozen=True, slots=True)
class _Code:
    appid: str
    openid: str
    scope: str
    issued_at: datetime


class WechatOAuth:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._secrets: dict[str, str] = {}
        self._codes: dict[str, _Code] = {}
        self._used: set[str] = set()

    def add_app(self, appid: str, secret: str) -> None:
        self._secrets[appid] = secret

    @staticmethod
    def openid_for(appid: str) -> str:
        """The simulated buyer's openid under ``appid`` (28 characters, like WeChat's)."""
        digest = hashlib.sha256(f"simulated-buyer:{appid}".encode()).digest()
        return "o" + base64.urlsafe_b64encode(digest).decode("ascii")[:27]

    def routes(self) -> list[Route]:
        return [
            Route("/wechat/connect/oauth2/authorize", self._authorize, methods=["GET"]),
            Route("/wechat/api/sns/oauth2/access_token", self._access_token, methods=["GET"]),
            Route("/wechatpay/bridge.js", self._bridge, methods=["GET"]),
            Route("/wechatpay/jsapi", self._sheet, methods=["GET"]),
        ]

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        appid, redirect_uri, scope = q.get("appid", ""), q.get("redirect_uri", ""), q.get("scope")
        if appid not in self._secrets:
            return _error_page("appid 无效 (invalid appid)")
        if q.get("response_type") != "code" or scope not in SCOPES:
            return _error_page("Scope 参数错误或没有 Scope 权限")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _error_page("redirect_uri 参数错误")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            appid, self.openid_for(appid), scope, self._sim.config.clock.now()
        )
        back = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(
            f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{back}", status_code=302
        )

    async def _access_token(self, request: Request) -> Response:
        q = request.query_params
        appid, code = q.get("appid", ""), q.get("code", "")
        if appid not in self._secrets:
            return _refusal(40013, "invalid appid")
        if not secrets.compare_digest(q.get("secret", ""), self._secrets[appid]):
            return _refusal(40125, "invalid appsecret")
        if q.get("grant_type") != "authorization_code":
            return _refusal(40002, "invalid grant_type")
        if code in self._used:
            return _refusal(40163, "code been used")
        issued = self._codes.pop(code, None)
        if issued is None or issued.appid != appid:
            return _refusal(40029, "invalid code")
        self._used.add(code)
        if self._sim.config.clock.now() - issued.issued_at > CODE_TTL:
            return _refusal(40029, "invalid code")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(32),
                "expires_in": 7200,
                "refresh_token": secrets.token_urlsafe(32),
                "openid": issued.openid,
                "scope": issued.scope,
                "is_snapshotuser": 0,
            }
        )

    async def _bridge(self, _request: Request) -> Response:
        return Response(_BRIDGE, media_type="text/javascript")

    async def _sheet(self, request: Request) -> Response:
        q = request.query_params
        package = q.get("package", "")
        prepay_id = package.removeprefix("prepay_id=")
        payment = next(
            (
                p
                for p in self._sim.state.payments.values()
                if p.protocol == "wechatpay" and p.details.get("prepay_id") == prepay_id
            ),
            None,
        )
        if not package.startswith("prepay_id=") or payment is None:
            return HTMLResponse(result_page(None, detail="prepay_id 无效"), status_code=404)
        merchant = self._sim.wechatpay.merchants.get(payment.app_id)
        message = f"{q.get('appId')}\n{q.get('timeStamp')}\n{q.get('nonceStr')}\n{package}\n"
        try:
            if merchant is None or q.get("appId") != payment.details.get("appid"):
                raise InvalidSignature
            if q.get("signType") != "RSA":
                raise InvalidSignature
            merchant.public_key.verify(
                base64.b64decode(q.get("paySign", ""), validate=False),
                message.encode("utf-8"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return HTMLResponse(
                result_page(payment, detail="支付验证签名失败 (paySign does not verify)"),
                status_code=400,
            )
        back = q.get("return", "")
        if payment.return_url is None and back.startswith(("http://", "https://")):
            payment.return_url = back
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/pay/{payment.trade_no}", status_code=303)


def _refusal(errcode: int, errmsg: str) -> Response:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg})


def _error_page(message: str) -> Response:
    return HTMLResponse(result_page(None, detail=message), status_code=400)
