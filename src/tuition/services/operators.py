"""Managing the console's operators: list them, change a role, lift a lockout, sign one
out everywhere. Creating one is :func:`tuition.services.admin.create_admin_user`."""

from __future__ import annotations

from tuition.clock import Clock
from tuition.domain.errors import Conflict, NotFound
from tuition.domain.operators import Role
from tuition.services import audit
from tuition.services.admin import normalize_email, parse_role
from tuition.services.admin_throttle import subject_of
from tuition.services.audit import Actor
from tuition.store.admin import AdminRepository, AdminUser
from tuition.store.uow import UnitOfWork


async def list_operators(uow: UnitOfWork) -> list[AdminUser]:
    async with uow:
        return await AdminRepository(uow.conn).users()


async def _find(repo: AdminRepository, email: str) -> AdminUser:
    user = await repo.user_by_email(normalize_email(email))
    if user is None:
        raise NotFound(f"no operator {email!r}", code="operator_not_found", param="email")
    return user


async def set_role(
    uow: UnitOfWork, email: str, role: str, *, clock: Clock, actor: Actor
) -> AdminUser:
    """Give an operator another role; the last owner keeps theirs (someone must be able
    to manage operators). Their open sessions end, so the new role holds at once."""
    chosen = parse_role(role)
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await _find(repo, email)
        if user.role == chosen:
            return user
        if user.role == Role.OWNER and await repo.count_owners() <= 1:
            raise Conflict(
                "the last owner cannot be given another role; make another owner first",
                code="last_owner",
                param="role",
            )
        if not await repo.set_role(user.id, chosen.value, was=user.role):
            raise Conflict("the operator was changed meanwhile; try again", param="role")
        await repo.revoke_sessions_of(user.id, at=clock.now())
        await audit.record(
            uow.conn,
            actor,
            "operator.role_changed",
            user.email,
            clock=clock,
            before={"role": user.role},
            after={"role": chosen.value},
        )
        await uow.commit()
    await audit.seal(uow)
    return await _reread(uow, user.email)


async def unlock(uow: UnitOfWork, email: str, *, clock: Clock, actor: Actor) -> int:
    """Lift every sign-in lock on an operator's account, from any IP; how many counters
    were cleared."""
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await _find(repo, email)
        cleared = await repo.clear_subject(subject_of(user.email))
        await audit.record(uow.conn, actor, "operator.unlocked", user.email, clock=clock)
        await uow.commit()
    await audit.seal(uow)
    return cleared


async def sign_out_everywhere(uow: UnitOfWork, email: str, *, clock: Clock, actor: Actor) -> int:
    """End every open session of an operator; how many there were."""
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await _find(repo, email)
        ended = await repo.revoke_sessions_of(user.id, at=clock.now())
        await audit.record(
            uow.conn,
            actor,
            "operator.signed_out_everywhere",
            user.email,
            clock=clock,
            after={"sessions_ended": ended},
        )
        await uow.commit()
    await audit.seal(uow)
    return ended


async def _reread(uow: UnitOfWork, email: str) -> AdminUser:
    async with uow:
        return await _find(AdminRepository(uow.conn), email)


async def reset_two_factor(uow: UnitOfWork, email: str, *, clock: Clock, actor: Actor) -> AdminUser:
    """Remove an operator's two-factor (a lost phone); they enrol again, and their open
    sessions end."""
    from tuition.services.two_factor import reset

    return await reset(uow, email, clock=clock, actor=actor)


async def require_two_factor(
    uow: UnitOfWork, required: bool, *, clock: Clock, actor: Actor
) -> None:
    """Require two-factor of every operator from their next sign-in (or stop)."""
    from tuition.services.admin import TWO_FACTOR_REQUIRED

    async with uow:
        repo = AdminRepository(uow.conn)
        was = await repo.console_setting(TWO_FACTOR_REQUIRED) == "true"
        await repo.put_console_setting(
            TWO_FACTOR_REQUIRED, "true" if required else "false", by=actor.name, at=clock.now()
        )
        await audit.record(
            uow.conn,
            actor,
            "setting.changed",
            TWO_FACTOR_REQUIRED,
            clock=clock,
            before={TWO_FACTOR_REQUIRED: was},
            after={TWO_FACTOR_REQUIRED: required},
        )
        await uow.commit()
    await audit.seal(uow)
