"""Running an awaitable from a plan (ophyd-async keeps its helper private)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

T = TypeVar("T")


def wait_for_awaitable(awaitable: Awaitable[T]) -> MsgGenerator[T]:
    """Plan stub: run ``awaitable`` in the RunEngine's loop; return its result.

    Not where the RunEngine may replay the message (after a checkpoint of a
    resumable plan): a coroutine can be awaited once. Use
    :func:`wait_for_call` there.
    """
    (task,) = yield from bps.wait_for([lambda: awaitable])
    return task.result()


def wait_for_call(func: Callable[[], Awaitable[T]]) -> MsgGenerator[T | None]:
    """Plan stub: await ``func()`` in the RunEngine's loop; return its result.

    ``func`` is called each time the message is processed, as bluesky's
    ``wait_for`` wants, so the RunEngine may replay it when it rewinds to a
    checkpoint on resume. None if a pause interrupted it: the RunEngine
    replays it then, and sends the plan nothing back.
    """
    tasks = yield from bps.wait_for([func])
    if tasks is None:
        return None
    (task,) = tasks
    return task.result()
