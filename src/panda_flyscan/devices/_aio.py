"""Running an awaitable from a plan (ophyd-async keeps its helper private)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

T = TypeVar("T")


def wait_for_awaitable(awaitable: Awaitable[T]) -> MsgGenerator[T]:
    """Plan stub: run ``awaitable`` in the RunEngine's loop; return its result."""
    (task,) = yield from bps.wait_for([lambda: awaitable])
    return task.result()
