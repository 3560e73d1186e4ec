"""Which mode's store a public page reads: the store that holds its object.

A checkout, receipt or agreement link names an order or a subscription, not a mode (the
link's signature is over the id), and each lives in exactly one mode's store, so the page
looks there: live first, then test. Ids are random and never reused, so a store once
found for an id is remembered. The console chooses its mode otherwise (admin_session.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import Request

from tuition.container import Modes
from tuition.domain.modes import Mode
from tuition.store.uow import UnitOfWork

_REMEMBERED = 4096
_found: OrderedDict[str, Mode] = OrderedDict()


async def page_mode(request: Request) -> None:
    """Router dependency of the public pages: sets ``request.state.mode``."""
    modes: Modes = request.app.state.modes
    if (
        request.url.path.startswith("/admin")
        or modes.test is modes.live
        or getattr(request.state, "mode", None) is not None
    ):
        return
    order_id = request.path_params.get("order_id")
    subscription_id = request.path_params.get("subscription_id")
    if isinstance(order_id, str):
        request.state.mode = await object_mode(modes, order_id, _order_exists)
    elif isinstance(subscription_id, str):
        request.state.mode = await object_mode(modes, subscription_id, _subscription_exists)


async def object_mode(
    modes: Modes, object_id: str, exists: Callable[[UnitOfWork, str], Awaitable[bool]]
) -> Mode:
    """The mode whose store holds ``object_id`` (live when neither does: not found)."""
    known = _found.get(object_id)
    if known is not None:
        return known
    for mode in ("live", "test"):
        async with modes[mode].uow() as uow:
            if await exists(uow, object_id):
                _remember(object_id, mode)
                return mode
    return "live"


async def _order_exists(uow: UnitOfWork, order_id: str) -> bool:
    return await uow.orders.get(order_id, with_lines=False) is not None


async def _subscription_exists(uow: UnitOfWork, subscription_id: str) -> bool:
    return await uow.subscriptions.get(subscription_id) is not None


def _remember(object_id: str, mode: Mode) -> None:
    _found[object_id] = mode
    if len(_found) > _REMEMBERED:
        _found.popitem(last=False)
