"""Admin sign-in throttling on both engines: counted before the password is checked, per
IP, per account and per (IP, account), one answer for every refusal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.clock import FrozenClock
from tuition.services import admin as admin_service
from tuition.services.admin_throttle import SignInThrottle, client_network
from tuition.store.uow import UnitOfWork

EMAIL, PASSWORD = "ops@example.com", "a-long-enough-password"
TTL = timedelta(hours=1)
REFUSAL = (401, "login_failed", admin_service.LoginRefused().message)


@pytest.fixture
async def operator(uow: UnitOfWork, clock: FrozenClock) -> str:
    await admin_service.create_admin_user(uow, EMAIL, PASSWORD, clock)
    return EMAIL


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password that reached the argon2 check."""
    checked: list[str] = []
    real = admin_service._verify

    def counting(stored: str, password: str) -> bool:
        checked.append(password)
        return real(stored, password)

    monkeypatch.setattr(admin_service, "_verify", counting)
    return checked


async def _try(
    uow: UnitOfWork,
    clock: FrozenClock,
    password: str,
    *,
    ip: str = "198.51.100.7",
    email: str = EMAIL,
    throttle: SignInThrottle = admin_service.DEFAULT_THROTTLE,
) -> bool:
    try:
        await admin_service.login(
            uow, email, password, clock=clock, ttl=TTL, client_ip=ip, throttle=throttle
        )
    except admin_service.LoginRefused as refused:
        answer = (refused.status, refused.code, refused.message)
    else:
        return True
    assert answer == REFUSAL  # one answer, whatever the reason
    return False


async def test_five_attempts_lock_that_ip_out_of_the_account_but_not_the_operator_elsewhere(
    uow: UnitOfWork, clock: FrozenClock, operator: str, verified: list[str]
) -> None:
    for _ in range(5):
        assert not await _try(uow, clock, "wrong-password")
    assert not await _try(uow, clock, PASSWORD)  # right, but this IP is locked out
    assert len(verified) == 5  # the sixth was not even checked
    assert await _try(uow, clock, PASSWORD, ip="203.0.113.50")  # the operator, elsewhere
    clock.advance(admin_service.LOCK_FOR + timedelta(seconds=1))
    assert await _try(uow, clock, PASSWORD)


async def test_unknown_emails_are_counted_and_checked_like_known_ones(
    uow: UnitOfWork, clock: FrozenClock, operator: str, verified: list[str]
) -> None:
    for email in (EMAIL, "nobody@example.com"):
        for _ in range(6):
            assert not await _try(uow, clock, "wrong-password", email=email, ip="192.0.2.9")
    assert len(verified) == 10  # five each: the same count, the same hashing time


async def test_one_ip_spraying_many_accounts_is_throttled(
    uow: UnitOfWork, clock: FrozenClock, operator: str, verified: list[str]
) -> None:
    for n in range(25):
        await _try(uow, clock, "wrong-password", email=f"user{n}@example.com")
    assert len(verified) == admin_service.DEFAULT_THROTTLE.per_ip
    assert not await _try(uow, clock, PASSWORD)


async def test_many_ips_on_one_account_hit_its_limit_and_a_new_password_lifts_it(
    uow: UnitOfWork, clock: FrozenClock, operator: str, verified: list[str]
) -> None:
    throttle = SignInThrottle(per_account=8)
    for n in range(10):
        await _try(uow, clock, "wrong-password", ip=f"198.51.100.{n}", throttle=throttle)
    assert len(verified) == 8
    assert not await _try(uow, clock, PASSWORD, ip="203.0.113.1", throttle=throttle)
    await admin_service.set_admin_password(uow, EMAIL, "another-long-password")
    assert await _try(uow, clock, "another-long-password", ip="203.0.113.1", throttle=throttle)


async def test_successful_sign_ins_do_not_use_up_the_ips_allowance(
    uow: UnitOfWork, clock: FrozenClock, operator: str
) -> None:
    for _ in range(30):
        assert await _try(uow, clock, PASSWORD)


def test_ipv6_clients_are_counted_per_64() -> None:
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::9")
    assert client_network("2001:db8:1:2::1") != client_network("2001:db8:1:3::1")
    assert client_network("::ffff:198.51.100.7") == "198.51.100.7"
    assert client_network(None) == client_network("not an address") == "unknown"


@pytest.mark.postgres_only
async def test_forty_concurrent_wrong_and_right_attempts_check_at_most_five_passwords(
    engine: AsyncEngine, uow: UnitOfWork, clock: FrozenClock, operator: str, verified: list[str]
) -> None:
    passwords = [f"wrong-password-{n}" for n in range(39)]
    passwords.insert(20, PASSWORD)
    # Each attempt has its own unit of work, so each holds its own connection.
    results = await asyncio.gather(*(_try(UnitOfWork(engine), clock, p) for p in passwords))
    assert len(verified) <= admin_service.MAX_FAILURES
    # The right password gets in only if it was among the few that were checked.
    assert sum(results) == (1 if PASSWORD in verified else 0)
    # Forty more, all wrong, then the right one: nothing past the limit is checked.
    before = len(verified)
    await asyncio.gather(*(_try(UnitOfWork(engine), clock, p) for p in passwords if p != PASSWORD))
    assert not await _try(uow, clock, PASSWORD)
    assert len(verified) - before <= admin_service.MAX_FAILURES
