"""Which mode's store a public page reads: the store that holds its order.

A checkout or receipt link names an order, not a mode (the link's signature is over the
order id), and an order lives in exactly one mode's store, so the page looks there:
live first, then test. Order ids are random and never reused, so a store once found for
an id is remembered. The console chooses its mode otherwise (admin_session.py).
"""

from __future__ import annotations

from collections import OrderedDict

from fastapi import Request

from tuition.container import Modes
from tuition.domain.modes import Mode

_REMEMBERED = 4096
_found: OrderedDict[str, Mode] = OrderedDict()


async def page_mode(request: Request) -> None:
    """Router dependency of the public pages: sets ``request.state.mode``."""
    order_id = request.path_params.get("order_id")
    modes: Modes = request.app.state.modes
    if (
        not isinstance(order_id, str)
        or request.url.path.startswith("/admin")
        or modes.test is modes.live
        or getattr(request.state, "mode", None) is not None
    ):
        return
    request.state.mode = await order_mode(modes, order_id)


async def order_mode(modes: Modes, order_id: str) -> Mode:
    """The mode whose store holds ``order_id`` (live when neither does: not found)."""
    known = _found.get(order_id)
    if known is not None:
        return known
    for mode in ("live", "test"):
        async with modes[mode].uow() as uow:
            if await uow.orders.get(order_id, with_lines=False) is not None:
                _remember(order_id, mode)
                return mode
    return "live"


def _remember(order_id: str, mode: Mode) -> None:
    _found[order_id] = mode
    if len(_found) > _REMEMBERED:
        _found.popitem(last=False)
