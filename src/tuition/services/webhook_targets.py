"""Where webhooks may be sent: public internet addresses only, unless a host is allowed.

An endpoint URL is chosen by whoever holds an API key, and the worker POSTs to it from
inside the deployment's network. Without a check that is server-side request forgery:
``http://169.254.169.254/latest/meta-data/`` or ``http://10.0.0.5:9200/`` would be
reached, and the answer shown in the delivery history. So a URL is checked twice:

- when it is registered (:func:`check_url`): well-formed, http(s), no ``user:pass@``,
  and no host that is a forbidden address or a local name;
- when it is delivered to (:class:`GuardedTransport`): the host is resolved, refused if
  *any* of its addresses is forbidden, and the connection goes to the address that was
  checked, so a DNS answer that changes between check and connect (rebinding) cannot
  slip an internal address in.

Hosts named in ``TUITION_WEBHOOK_ALLOWED_HOSTS`` (local development, tests) skip the
address checks; they are compared exactly, case-insensitively.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import httpx

from tuition.domain.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

# Not caught by ``is_global``/``is_multicast``: IPv6 prefixes that embed an IPv4 address
# a gateway will translate to, so a private IPv4 address could hide inside them.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# Names that mean "this machine" or a cloud's metadata service whatever DNS says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata.google.internal", "metadata")


class RefusedTarget(httpx.ConnectError):
    """A delivery was not sent: its host is, or resolves to, a forbidden address."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Hosts exempt from the address checks (exact names or IP literals)."""

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def allowing(cls, hosts: Collection[str]) -> TargetPolicy:
        return cls(frozenset(_normal_host(h) for h in hosts))

    def allows(self, host: str) -> bool:
        return _normal_host(host) in self.allowed_hosts


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def forbidden(address: IPAddress) -> bool:
    """True for loopback, private, link-local, CGNAT, multicast, unspecified, reserved
    and documentation addresses, and IPv6 forms that wrap one of those IPv4 addresses."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and any(address in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden(embedded)
    # is_global is False for private, loopback, link-local (169.254.0.0/16 and fe80::/10,
    # which hold the cloud metadata services), CGNAT 100.64.0.0/10, unique-local fc00::/7
    # (AWS's fd00:ec2::254), unspecified and reserved ranges; multicast is "global".
    return not address.is_global or address.is_multicast or address.is_reserved


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one, including the legacy IPv4 spellings the
    C resolver accepts (``2130706433``, ``0x7f.1``, ``127.1``)."""
    host = _normal_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _local_name(host: str) -> bool:
    host = _normal_host(host)
    return host in _LOCAL_NAMES or host.endswith(".localhost")


def check_url(url: str, policy: TargetPolicy) -> str:
    """``url`` if it may be registered as an endpoint; ValidationFailed naming ``url``."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise _invalid("url must not contain spaces or control characters")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise _invalid(f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _invalid("url must be an absolute http(s) URL")
    if parsed.userinfo:
        raise _invalid("url must not carry credentials (user:password@)")
    if port is not None and not 1 <= port <= 65535:
        raise _invalid(f"url has port {port}, outside 1-65535")
    host = parsed.host
    if policy.allows(host):
        return url
    address = literal_address(host)
    if (address is not None and forbidden(address)) or _local_name(host):
        raise ValidationFailed(
            f"url points at {host}, a loopback, private, link-local or otherwise non-public "
            "address; webhooks go to public hosts only (local development: "
            "TUITION_WEBHOOK_ALLOWED_HOSTS)",
            code="url_forbidden",
            param="url",
        )
    return url


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="url_invalid", param="url")


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        # Scoped IPv6 answers ("fe80::1%eth0") keep their scope after a '%'.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


class GuardedTransport(httpx.AsyncBaseTransport):
    """Sends each request to a checked address of its host, or refuses it.

    The URL's host is replaced by the checked IP address; the ``Host`` header and, for
    https, the TLS server name (SNI and certificate check) keep the original name.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: TargetPolicy,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if self.policy.allows(host):
            return await self.inner.handle_async_request(request)
        if request.url.userinfo or _local_name(host):
            raise RefusedTarget(f"{host} is not a public host", request=request)
        address = literal_address(host)
        if address is None:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            try:
                addresses = await self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from None
            if not addresses:
                raise httpx.ConnectError(f"cannot resolve {host}", request=request)
            if any(forbidden(a) for a in addresses):
                raise RefusedTarget(
                    f"{host} resolves to a non-public address; not sent", request=request
                )
            address = addresses[0]
        elif forbidden(address):
            raise RefusedTarget(f"{host} is a non-public address; not sent", request=request)
        if request.url.scheme == "https" and literal_address(host) is None:
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = request.url.copy_with(host=str(address))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
