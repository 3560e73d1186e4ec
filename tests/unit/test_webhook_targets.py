"""Where webhooks may go: public addresses only, checked at registration and delivery."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from tuition.domain.errors import ValidationFailed
from tuition.services.webhook_targets import (
    GuardedTransport,
    IPAddress,
    RefusedTarget,
    TargetPolicy,
    check_url,
    forbidden,
    literal_address,
)

STRICT = TargetPolicy()

FORBIDDEN = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "169.254.169.254",  # AWS, GCP, Azure metadata
    "100.100.100.200",  # Alibaba Cloud metadata (CGNAT range)
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "198.18.0.1",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fd00:ec2::254",  # AWS IPv6 metadata
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1")],
)
def test_legacy_ipv4_spellings_are_read_as_addresses(spelling: str, address: str) -> None:
    assert literal_address(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://example.com/\x00", "url_invalid"),
        ("https://exa\nmple.com/", "url_invalid"),
        ("https://example.com/a b", "url_invalid"),
        ("https://example.com:99999/", "url_invalid"),
        ("ftp://example.com/", "url_invalid"),
        ("https://user:pass@example.com/", "url_invalid"),
        ("http://127.0.0.1:8080/", "url_forbidden"),
        ("http://2130706433/", "url_forbidden"),
        ("http://[::1]/", "url_forbidden"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "url_forbidden"),
        ("http://169.254.169.254/latest/meta-data/", "url_forbidden"),
        ("http://localhost:9200/", "url_forbidden"),
        ("http://api.localhost/", "url_forbidden"),
        ("http://metadata.google.internal/computeMetadata/v1/", "url_forbidden"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused_naming_url(url: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_url(url, STRICT)
    assert (refused.value.param, refused.value.code) == ("url", code)


def test_an_allowed_host_may_be_local_but_never_carry_credentials() -> None:
    policy = TargetPolicy.allowing(["127.0.0.1", "LocalHost"])
    assert check_url("http://127.0.0.1:9000/hooks", policy)
    assert check_url("http://localhost/hooks", policy)
    with pytest.raises(ValidationFailed):
        check_url("http://u:p@127.0.0.1/hooks", policy)
    with pytest.raises(ValidationFailed):
        check_url("http://10.0.0.1/hooks", policy)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(200, text="ok")

        return httpx.MockTransport(handle)


def _resolving(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(_host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


async def test_a_delivery_connects_to_the_checked_address_keeping_host_and_sni() -> None:
    recorder = Recorder()
    guard = GuardedTransport(recorder.transport(), STRICT, _resolving("93.184.215.14"))
    async with httpx.AsyncClient(transport=guard) as client:
        response = await client.post("https://platform.example/hooks", content=b"{}")
    assert response.status_code == 200
    [sent] = recorder.requests
    assert sent.url.host == "93.184.215.14"
    assert sent.url.path == "/hooks"
    assert sent.headers["Host"] == "platform.example"
    assert sent.extensions["sni_hostname"] == "platform.example"


@pytest.mark.parametrize(
    "answers", [("10.0.0.7",), ("93.184.215.14", "169.254.169.254"), ("fd00:ec2::254",)]
)
async def test_a_host_resolving_to_any_internal_address_is_not_sent_to(
    answers: tuple[str, ...],
) -> None:
    recorder = Recorder()
    guard = GuardedTransport(recorder.transport(), STRICT, _resolving(*answers))
    async with httpx.AsyncClient(transport=guard) as client:
        with pytest.raises(RefusedTarget):
            await client.post("https://rebind.example/hooks", content=b"{}")
    assert recorder.requests == []


async def test_a_literal_internal_address_is_refused_at_delivery_too() -> None:
    recorder = Recorder()
    guard = GuardedTransport(recorder.transport(), STRICT, _resolving("93.184.215.14"))
    async with httpx.AsyncClient(transport=guard) as client:
        for url in ("http://127.0.0.1:8000/", "http://2130706433/", "http://localhost/"):
            with pytest.raises(RefusedTarget):
                await client.post(url, content=b"{}")
    assert recorder.requests == []


async def test_an_allowed_host_is_sent_to_unchanged_without_resolving() -> None:
    recorder = Recorder()

    async def no_dns(_host: str, _port: int) -> list[IPAddress]:
        raise AssertionError("an allowed host is not resolved")

    guard = GuardedTransport(recorder.transport(), TargetPolicy.allowing(["127.0.0.1"]), no_dns)
    async with httpx.AsyncClient(transport=guard) as client:
        await client.post("http://127.0.0.1:9000/hooks", content=b"{}")
    assert str(recorder.requests[0].url) == "http://127.0.0.1:9000/hooks"


async def test_an_unresolvable_host_is_a_connection_error() -> None:
    async def nxdomain(_host: str, _port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    guard = GuardedTransport(Recorder().transport(), STRICT, nxdomain)
    async with httpx.AsyncClient(transport=guard) as client:
        with pytest.raises(httpx.ConnectError, match="cannot resolve"):
            await client.post("https://nowhere.example/", content=b"{}")
