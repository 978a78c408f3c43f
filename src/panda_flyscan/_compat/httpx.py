"""httpx's private API: swapping the transport of an existing client.

Candidate upstream issue: Tiled builds its ``httpx.Client`` inside
``Context`` (wrapping the transport in its own caching ``Transport``) and
offers no way to pass a transport in, and httpx has no public setter for a
client's transport. The fail-fast policy (:mod:`panda_flyscan.storage.fail_fast`)
therefore replaces ``Client._transport`` in place. A ``transport=`` argument
to ``tiled.client.from_uri`` / ``Context`` would remove the need.
"""

from __future__ import annotations

import httpx

from . import require

require("httpx", "~=0.28", uses="httpx.Client._transport")

__all__ = ["get_transport", "set_transport"]


def get_transport(client: httpx.Client) -> httpx.BaseTransport:
    """The transport ``client`` sends its requests through (no mounts).

    Would be unnecessary with a public ``httpx.Client.transport`` (read), or
    with Tiled taking the transport from its caller.
    """
    return client._transport


def set_transport(client: httpx.Client, transport: httpx.BaseTransport) -> None:
    """Make ``client`` send its requests through ``transport`` from now on.

    Would be unnecessary with a ``transport=`` argument to
    ``tiled.client.from_uri`` / ``tiled.client.context.Context`` (Tiled
    creates the client), or a public setter in httpx.
    """
    client._transport = transport
