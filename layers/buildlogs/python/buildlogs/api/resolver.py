"""The REST resolver with its per-request state per thread, so concurrent requests never mix.

Powertools keeps the request being resolved in class attributes (``current_event``,
``lambda_context``) and one ``context`` dict (the matched route and its arguments). In Lambda a
container serves one request at a time, so that is safe; the local API (``buildlogs.client.
local_api``) serves one thread per request, as concurrent Lambda invocations would be, and there
a long-poll's route could run with another request's event or arguments, or have its context
cleared under it. This subclass keeps the three per thread; in Lambda it behaves as the parent.
"""

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext


class _RequestState(threading.local):
    """What one thread's request holds while the resolver works on it."""

    def __init__(self) -> None:
        self.event: Any = None
        self.lambda_context: Any = None
        self.context: dict[str, Any] = {}


class ThreadSafeRestResolver(APIGatewayRestResolver):
    """``APIGatewayRestResolver`` whose request, Lambda context and routing context are per thread."""

    def __init__(self, **options: Any) -> None:
        self._request = _RequestState()
        super().__init__(**options)

    @property  # type: ignore[override]
    def current_event(self) -> BaseProxyEvent:
        event: BaseProxyEvent = self._request.event
        return event

    @current_event.setter
    def current_event(self, value: BaseProxyEvent) -> None:
        self._request.event = value

    @property
    def lambda_context(self) -> LambdaContext:
        context: LambdaContext = self._request.lambda_context
        return context

    @lambda_context.setter
    def lambda_context(self, value: LambdaContext) -> None:
        self._request.lambda_context = value

    @property
    def context(self) -> dict[str, Any]:
        return self._request.context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request.context = value

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Record this thread's request, then resolve as Powertools does."""
        raw = event.raw_event if isinstance(event, BaseProxyEvent) else event
        self._request.event = self._to_proxy_event(dict(raw))
        self._request.lambda_context = context
        self._request.context = {}
        return super().resolve(event, context)


__all__ = ["ThreadSafeRestResolver"]
