"""ThreadSafeRestResolver: a request resolved on another thread never changes this thread's request."""

import threading
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from buildlogs.api.resolver import ThreadSafeRestResolver
from buildlogs.client.local_api import LocalLambdaContext, rest_event

TIMEOUT_S = 10


def _app_with_a_slow_route(
    resolver: APIGatewayRestResolver, entered: threading.Event, other_done: threading.Event
) -> None:
    @resolver.get("/slow/<name>")
    def slow(name: str) -> dict[str, Any]:
        # waits in its route while another thread resolves a whole request (and clears its context)
        entered.set()
        assert other_done.wait(TIMEOUT_S)
        route = resolver.context.get("_route")
        return {"name": name, "path": resolver.current_event.path, "route": route.path if route else None}

    @resolver.get("/fast/<name>")
    def fast(name: str) -> dict[str, Any]:
        return {"name": name}


def _slow_beside_a_fast_one(resolver: APIGatewayRestResolver) -> dict[str, Any]:
    entered, other_done = threading.Event(), threading.Event()
    _app_with_a_slow_route(resolver, entered, other_done)
    answers: list[dict[str, Any]] = []
    slow = threading.Thread(
        target=lambda: answers.append(resolver.resolve(rest_event("GET", "/slow/a"), LocalLambdaContext("t")))
    )
    slow.start()
    assert entered.wait(TIMEOUT_S)
    fast = resolver.resolve(rest_event("GET", "/fast/b"), LocalLambdaContext("t"))
    assert fast["statusCode"] == 200
    other_done.set()
    slow.join(TIMEOUT_S)
    return answers[0]


def test_a_long_route_keeps_its_own_event_and_route_while_another_request_is_resolved() -> None:
    # GIVEN the thread-safe resolver, WHEN a fast request is resolved while a slow one runs its route
    answer = _slow_beside_a_fast_one(ThreadSafeRestResolver())
    # THEN the slow route still sees its own event and matched route
    assert answer["statusCode"] == 200, answer
    assert '"path":"/slow/a"' in answer["body"]
    assert '"route":"/slow/<name>"' in answer["body"]


def test_powertools_own_resolver_mixes_them_which_is_why_the_subclass_exists() -> None:
    # GIVEN Powertools' resolver (class-level event, one context dict), WHEN the same happens
    answer = _slow_beside_a_fast_one(APIGatewayRestResolver())
    # THEN the slow route reads the other request's event and a cleared context (the local API's race)
    assert '"path":"/fast/b"' in answer["body"]
    assert '"route":null' in answer["body"]
