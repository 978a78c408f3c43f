"""A fail-fast policy for Tiled clients: one failure, and no more requests.

Tiled's client retries failed requests for up to ~45 s (10 attempts with
backoff). That is right for interactive reads but wrong for a set-up check and
for a writer that must not hold a run hostage, so clients opened for those can
carry a :class:`FailFastTransport`: after the first transport error or 5xx
response, every later request (including Tiled's own retries) raises
:class:`RequestAborted` immediately.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from .._compat.httpx import get_transport, set_transport

__all__ = ["FailFastTransport", "RequestAborted", "failing_fast", "install_fail_fast"]


class RequestAborted(Exception):
    """A request refused because an earlier one on this client failed.

    Deliberately not an ``httpx.HTTPError``: Tiled's retry predicate then
    lets it through at once instead of retrying for tens of seconds.
    """


class FailFastTransport(httpx.BaseTransport):
    """Transport wrapper that trips on the first transport error or 5xx.

    Once tripped, every request raises :class:`RequestAborted` until
    :meth:`reset`. Used by the writer's private client, from one thread.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.failure: str | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Forward the request unless tripped; trip on failure."""
        if self.failure is not None:
            raise RequestAborted(f"not sent, Tiled failed earlier: {self.failure}")
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as err:
            self.failure = (
                f"{type(err).__name__}: {err} ({request.method} {request.url})"
            )
            raise
        if response.status_code >= 500:
            self.failure = (
                f"HTTP {response.status_code} for {request.method} {request.url}"
            )
        return response

    def reset(self) -> None:
        """Allow requests again (e.g. at the start of the next run)."""
        self.failure = None

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def install_fail_fast(client: Any) -> FailFastTransport:
    """Wrap the HTTP transport of ``client``'s context (idempotent).

    Affects every client sharing that context: only use it on a connection
    opened for the purpose (:func:`.checks.connect` with ``fail_fast=True``).
    """
    http_client = client.context.http_client
    transport = get_transport(http_client)
    if not isinstance(transport, FailFastTransport):
        transport = FailFastTransport(transport)
        set_transport(http_client, transport)
    return transport


@contextlib.contextmanager
def failing_fast(client: Any) -> Iterator[FailFastTransport]:
    """Make ``client`` fail fast for the duration; restore it afterwards."""
    http_client = client.context.http_client
    original = get_transport(http_client)
    if isinstance(original, FailFastTransport):
        failure = original.failure
        original.reset()
        try:
            yield original
        finally:
            original.failure = failure
        return
    transport = FailFastTransport(original)
    set_transport(http_client, transport)
    try:
        yield transport
    finally:
        set_transport(http_client, original)
