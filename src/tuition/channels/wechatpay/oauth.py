"""WeChat web OAuth (网页授权) with ``scope=snsapi_base``: the buyer's openid for JSAPI.

A JSAPI payment names its payer by openid, the buyer's id under the official account
(公众号) whose ``appid`` the merchant pays through. A page opened inside WeChat learns it
without asking the buyer anything:

1. send the browser to ``https://open.weixin.qq.com/connect/oauth2/authorize?appid=…&
   redirect_uri=…&response_type=code&scope=snsapi_base&state=…#wechat_redirect``;
2. WeChat sends it back (silently, for snsapi_base) to ``redirect_uri?code=…&state=…``;
3. the server trades the code, once and within five minutes, at
   ``GET https://api.weixin.qq.com/sns/oauth2/access_token?appid=…&secret=…&code=…&
   grant_type=authorization_code`` for ``{"access_token", "expires_in", "openid",
   "scope", …}``, or an ``{"errcode", "errmsg"}`` refusal (40029 invalid code, 40163 code
   already used, 40125 invalid secret …).

The official account's AppSecret stays on the server; it is never in a URL the browser
sees nor in a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from tuition.channels.base import ChannelTimeout
from tuition.domain.errors import ChannelError

AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
API_URL = "https://api.weixin.qq.com"
TOKEN_PATH = "/sns/oauth2/access_token"
SCOPE = "snsapi_base"


class OAuthRefused(ChannelError):
    """WeChat refused the code (``errcode``): the buyer is asked to try again."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat OAuth refused ({errcode}): {errmsg}", code="wechat_oauth_failed")
        self.errcode = errcode


@dataclass(frozen=True, slots=True)
class WebOAuthConfig:
    appid: str
    secret: str = field(repr=False)
    authorize_url: str = AUTHORIZE_URL
    api_url: str = API_URL
    timeout_seconds: int = 10

    def __post_init__(self) -> None:
        if not self.appid or not self.secret:
            raise ValueError("wechatpay web OAuth: appid and the official account's secret")


class WebOAuth:
    def __init__(
        self, config: WebOAuthConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.api_url.rstrip("/"),
            transport=transport,
            timeout=config.timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"WebOAuth(appid={self.config.appid!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where to send the buyer's browser (step 1); parameters in WeChat's order."""
        query = urlencode(
            {
                "appid": self.config.appid,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": SCOPE,
                "state": state,
            }
        )
        return f"{self.config.authorize_url}?{query}#wechat_redirect"

    async def openid(self, code: str) -> str:
        """Trade the code WeChat sent back for the buyer's openid (step 3)."""
        params = {
            "appid": self.config.appid,
            "secret": self.config.secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        try:
            answer = await self._http.get(TOKEN_PATH, params=params)
        except httpx.HTTPError as exc:
            raise ChannelTimeout(f"WeChat OAuth did not answer: {type(exc).__name__}") from None
        if answer.status_code >= 500:
            raise ChannelTimeout(f"WeChat OAuth answered {answer.status_code}")
        try:
            data = json.loads(answer.content)
        except ValueError:
            raise ChannelTimeout("WeChat OAuth answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise ChannelTimeout("WeChat OAuth answered something that is not an object")
        if data.get("errcode"):
            raise OAuthRefused(int(data["errcode"]), str(data.get("errmsg", ""))[:200])
        openid = data.get("openid")
        if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
            raise ChannelTimeout("WeChat OAuth answered without an openid")
        return openid
