"""Two-factor sign-in for the console: TOTP (RFC 6238, 30-second steps, 6 digits) with
one-time recovery codes.

- Enrolment: :func:`start_enrolment` keeps a new secret (sealed with AES-GCM under a key
  derived from the platform's signing key, so a copy of the table alone gives no
  secret) and gives the ``otpauth://`` URI for the QR code; :func:`confirm_enrolment`
  turns two-factor on once a first code checks, and gives ten recovery codes, shown
  once (only their SHA-256 is kept).
- Sign-in: a session opened by a right password stays *pending* while the operator has
  two-factor on (or an owner requires it for everyone); :func:`verify` accepts a code
  of the current step or one either side, never the same step twice (a conditional
  UPDATE moves the last accepted step forward), or a recovery code, once. Attempts are
  throttled per operator like passwords.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tuition.clock import Clock
from tuition.domain.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from tuition.services import audit
from tuition.services.admin import TWO_FACTOR_REQUIRED, normalize_email, token_hash
from tuition.services.admin_throttle import DEFAULT_THROTTLE, SignInThrottle
from tuition.services.audit import Actor
from tuition.store.admin import AdminRepository, AdminUser
from tuition.store.uow import UnitOfWork

ISSUER = "Tuition"
RECOVERY_CODES = 10
_STEP_SECONDS = 30
_SEAL_VERSION = "v1:"


class SecondFactorRefused(AuthenticationFailed):
    """A wrong, reused or throttled code: one answer for all."""

    default_code = "second_factor_failed"

    def __init__(self) -> None:
        super().__init__("wrong or used code, or too many attempts")


def _aead(signing_key: bytes) -> AESGCM:
    return AESGCM(hashlib.sha256(b"tuition-totp-secret\0" + signing_key).digest())


def seal(secret: str, signing_key: bytes) -> str:
    nonce = os.urandom(12)
    sealed = _aead(signing_key).encrypt(nonce, secret.encode(), b"totp")
    return _SEAL_VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(sealed: str, signing_key: bytes) -> str:
    if not sealed.startswith(_SEAL_VERSION):
        raise ValueError("not a sealed TOTP secret")
    raw = base64.urlsafe_b64decode(sealed.removeprefix(_SEAL_VERSION))
    try:
        return _aead(signing_key).decrypt(raw[:12], raw[12:], b"totp").decode()
    except InvalidTag:
        raise ValueError("the TOTP secret does not open with this signing key") from None


def recovery_hash(code: str) -> str:
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(b"tuition-recovery\0" + normal.encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = secrets.token_hex(5)  # 40 bits, as two groups of five
    return f"{raw[:5]}-{raw[5:]}"


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str  # base32, for typing in by hand
    uri: str  # otpauth://totp/..., for the QR code


async def start_enrolment(
    uow: UnitOfWork, user: AdminUser, *, signing_key: bytes, keep: bool = True
) -> Enrolment:
    """The secret to enrol: the one already waiting for its first code (``keep``, so a
    reloaded page shows the same QR code), else a new one."""
    if user.totp_enabled_at is not None:
        raise Conflict("two-factor is already on", code="two_factor_enabled")
    secret = None
    if keep and user.totp_secret is not None:
        try:
            secret = unseal(user.totp_secret, signing_key)
        except ValueError:
            secret = None
    if secret is None:
        secret = pyotp.random_base32()
        async with uow:
            if not await AdminRepository(uow.conn).set_pending_totp(
                user.id, seal(secret, signing_key)
            ):
                raise Conflict("two-factor is already on", code="two_factor_enabled")
            await uow.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return Enrolment(secret, uri)


def _matching_step(secret: str, code: str, now_ts: float) -> int | None:
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now_ts)
    for candidate in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


async def confirm_enrolment(
    uow: UnitOfWork,
    user_id: str,
    code: str,
    *,
    signing_key: bytes,
    clock: Clock,
    session_token: str | None = None,
    actor: Actor = audit.SYSTEM,
) -> list[str]:
    """Turn two-factor on with a first code; the recovery codes, shown once. The session
    ``session_token`` (a pending one, when enrolment was required) is complete."""
    now = clock.now()
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await repo.user_by_id(user_id)
        if user is None:
            raise NotFound("no such operator", code="operator_not_found")
        if user.totp_enabled_at is not None:
            raise Conflict("two-factor is already on", code="two_factor_enabled")
        if user.totp_secret is None:
            raise Conflict("start the enrolment first", code="two_factor_not_started")
        step = _matching_step(unseal(user.totp_secret, signing_key), code, now.timestamp())
        if step is None:
            raise ValidationFailed(
                "that code does not match; check the phone's clock and try the next code",
                code="totp_invalid",
                param="code",
            )
        if not await repo.enable_totp(user.id, user.totp_secret, step=step, at=now):
            raise Conflict("two-factor was changed meanwhile; reload", code="two_factor_changed")
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
        await repo.replace_recovery_codes(user.id, [recovery_hash(c) for c in codes], at=now)
        if session_token is not None:
            await repo.complete_second_factor(token_hash(session_token))
        await audit.record(uow.conn, actor, "operator.two_factor_enabled", user.email, clock=clock)
        await uow.commit()
    await audit.seal(uow)
    return codes


async def verify(
    uow: UnitOfWork,
    session_token: str,
    user: AdminUser,
    code: str,
    *,
    signing_key: bytes,
    clock: Clock,
    throttle: SignInThrottle = DEFAULT_THROTTLE,
) -> bool:
    """Complete a pending session with a TOTP or recovery code, or raise
    :class:`SecondFactorRefused`. True when a recovery code was spent."""
    now = clock.now()
    key = hashlib.sha256(f"second-factor\0{user.id}".encode()).hexdigest()
    async with uow:
        repo = AdminRepository(uow.conn)
        allowed = await repo.claim_attempt(
            key,
            subject=None,
            limit=throttle.per_ip_and_account,
            window=throttle.window,
            lock_for=throttle.lock_for,
            now=now,
        )
        if allowed:
            await uow.commit()
    if not allowed or user.totp_secret is None or user.totp_enabled_at is None:
        raise SecondFactorRefused()
    step = _matching_step(unseal(user.totp_secret, signing_key), code, now.timestamp())
    async with uow:
        repo = AdminRepository(uow.conn)
        if step is not None:
            ok, recovered = await repo.accept_totp_step(user.id, step), False
        else:
            ok = await repo.spend_recovery_code(user.id, recovery_hash(code), at=now)
            recovered = ok
        if not ok or not await repo.complete_second_factor(token_hash(session_token)):
            raise SecondFactorRefused()  # nothing committed: the code stays unused
        await repo.clear_throttles(key)
        await uow.commit()
    return recovered


async def required_for_everyone(uow: UnitOfWork) -> bool:
    async with uow:
        return await AdminRepository(uow.conn).console_setting(TWO_FACTOR_REQUIRED) == "true"


async def reset(uow: UnitOfWork, email: str, *, clock: Clock, actor: Actor) -> AdminUser:
    """Remove an operator's secret and recovery codes and end their sessions."""
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await repo.user_by_email(normalize_email(email))
        if user is None:
            raise NotFound(f"no operator {email!r}", code="operator_not_found", param="email")
        await repo.clear_totp(user.id)
        await repo.revoke_sessions_of(user.id, at=clock.now())
        await audit.record(uow.conn, actor, "operator.two_factor_reset", user.email, clock=clock)
        await uow.commit()
    await audit.seal(uow)
    return user
