"""Every route's endpoint and dependencies are coroutines: FastAPI runs a plain ``def``
one in a worker thread (a thread hand-off per call), and none of ours blocks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from tuition import web
from tuition.api import health
from tuition.app import _feature_routers, _page_routers
from tuition.web.modes import page_mode


def _on_the_loop(call: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    dunder = None if inspect.isroutine(call) else getattr(type(call), "__call__", None)
    return dunder is not None and inspect.iscoroutinefunction(dunder)


def _routes(router: APIRouter) -> Iterator[APIRoute]:
    for route in router.routes:
        included = getattr(route, "original_router", None)  # a router included in this one
        if isinstance(included, APIRouter):
            yield from _routes(included)
        else:
            assert isinstance(route, APIRoute), route
            yield route


def _calls(route: APIRoute) -> Iterator[Callable[..., Any]]:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        stack.extend(dependant.dependencies)
        if dependant.call is not None:
            yield dependant.call


def test_no_route_runs_a_dependency_or_endpoint_in_a_thread() -> None:
    routers = [health.router, *_feature_routers(), *_page_routers(), *web.routers]
    routes = [route for router in routers for route in _routes(router)]
    assert len(routes) > 200  # the walk reached the whole API and the console
    in_threads = [
        f"{sorted(route.methods)} {route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route)
        if not _on_the_loop(call)
    ]
    assert in_threads == []
    assert _on_the_loop(page_mode)  # the pages' router dependency (app.py)


def test_a_plain_def_dependency_is_told_apart() -> None:
    def plain() -> None: ...

    class Callable_:
        def __call__(self) -> None: ...

    assert not _on_the_loop(plain)
    assert not _on_the_loop(Callable_())
