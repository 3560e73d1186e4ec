"""Roles enforced on the server for every console page and action.

A route says what it needs in one of two ways, both read by the one check in
:func:`tuition.web.admin_session.signed_in` before the route runs:

- ``@requires(Permission.PAYOUTS)`` on the route function, or
- ``operator: Annotated[Operator, require_role(Permission.PAYOUTS)]`` as its operator
  (:func:`tuition.web.admin_session.require_role`).

A route that says nothing is readable by every role when it is a GET (pages), and is
for owners only otherwise: an action somebody forgot to mark is refused, never open.
A refused request is a 403 page naming the operator's role and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.dependencies.models import Dependant
from starlette.responses import Response

from tuition.domain.errors import PermissionDenied
from tuition.domain.operators import Permission, Role, permits
from tuition.web import labels
from tuition.web.pages import render

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__tuition_permissions__"
_READ_METHODS = frozenset({"GET", "HEAD"})
_CACHED = "_tuition_needed"


class OperatorRefused(PermissionDenied):
    """The operator's role does not allow this page or action."""

    default_code = "role_forbidden"

    def __init__(self, role: str, needed: frozenset[Permission]) -> None:
        super().__init__(f"the {role} role may not do this (needs {', '.join(sorted(needed))})")
        self.role = role
        self.needed = needed


def marks(permissions: frozenset[Permission]) -> dict[str, frozenset[Permission]]:
    return {_ATTRIBUTE: permissions}


def requires(*permissions: Permission) -> Callable[[F], F]:
    """Mark a console route as needing ``permissions`` (all of them)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, frozenset(permissions))
        return endpoint

    return mark


def needed(request: Request) -> frozenset[Permission]:
    """What the matched route needs, from its marks or by its method."""
    route = request.scope.get("route")
    if route is None:
        return frozenset({Permission.OPERATORS})
    found: frozenset[Permission] | None = getattr(route, _CACHED, None)
    if found is None:
        marks: set[Permission] = set(getattr(route.endpoint, _ATTRIBUTE, ()))
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            marks |= _required_by(dependant)
        if not marks:
            methods = getattr(route, "methods", None) or set()
            marks = {Permission.READ} if set(methods) <= _READ_METHODS else {Permission.OPERATORS}
        found = frozenset(marks)
        setattr(route, _CACHED, found)  # on the route itself: it lives as long as its app
    return found


def _required_by(dependant: Dependant) -> set[Permission]:
    found: set[Permission] = set()
    for sub in dependant.dependencies:
        marked = getattr(sub.call, _ATTRIBUTE, None)
        if isinstance(marked, frozenset):
            found |= marked
        found |= _required_by(sub)
    return found


def authorize(request: Request, role: str) -> None:
    """Raise :class:`OperatorRefused` unless ``role`` holds what the route needs."""
    wanted = needed(request)
    if not all(permits(role, p) for p in wanted):
        raise OperatorRefused(role, wanted)


async def refused_page(request: Request, exc: Exception) -> Response:
    """The 403 page of a refused console request (installed by :func:`tuition.web.install`)."""
    assert isinstance(exc, OperatorRefused)
    return render(
        request,
        "admin/role_refused.html",
        {
            "role": exc.role if exc.role in set(Role) else "",
            "labels_roles": labels.ROLES,
            "needed": sorted(exc.needed),
        },
        status_code=403,
    )
