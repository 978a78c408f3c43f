"""After an error, abort or Ctrl-C: stop, disarm, keep what was captured.

:func:`stop_and_keep` stops the trigger sources and the motor, disarms the
PandA (waiting until the IOC has written every row it received), collects
those rows and closes the run with an exit status saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
from bluesky.utils import FailedPause, MsgGenerator, RequestAbort, RequestStop
from ophyd_async.core import set_and_wait_for_other_value, wait_for_value
from ophyd_async.fastcs.panda import HDFPanda

from ..devices._aio import wait_for_awaitable
from .errors import HealthError, PandaLinkLost
from .signals import interrupting_signal

if TYPE_CHECKING:
    from .fly_run import FlyRun

__all__ = ["stop_and_keep"]


def _exit_status(exc: BaseException) -> str:
    if isinstance(exc, RequestStop):
        return "success"
    if isinstance(exc, (RequestAbort, FailedPause)):
        return "abort"
    return "fail"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FailedPause):
        if (name := interrupting_signal()) is not None:
            return f"{name} received: the flyscan was stopped and the run closed"
        return "paused (Ctrl-C twice): a flyscan cannot resume, so it was aborted"
    if isinstance(exc, RequestAbort):
        return "aborted"
    if isinstance(exc, HealthError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)


def stop_and_keep(
    run: FlyRun,
    state: dict[str, bool],
    exc: BaseException,
    rows_in_file: Callable[[], int | None] | None = None,
) -> MsgGenerator[None]:
    """After ``exc``: stop triggers and motion, disarm, keep what was captured.

    ``state`` says whether the run is open and its streams declared. Every
    step is bounded and shielded: statuses abandoned by the error (the
    flyers' ``complete``) may fail while we clean up, and the RunEngine
    reports that at our next message; clean-up goes on regardless.

    When the PandA is out of reach (:class:`PandaLinkLost`), nothing is put
    to its blocks (each put would wait out its timeout; a restarted IOC is
    only asked to disarm): the motors are stopped, and the rows the PandA's
    file holds (``rows_in_file``, where this host sees it) are collected, so
    Tiled lists every row its dead writer flushed.
    """
    lost = exc if isinstance(exc, PandaLinkLost) else None
    reachable = lost is None
    steps: list[Callable[[], MsgGenerator[Any]]] = [
        *(
            (lambda f=f: wait_for_awaitable(_quietly(f.stop())))  # type: ignore[misc]
            for f in run.flyers
            if reachable or not f.panda_block
        ),
        *(
            (lambda f=f: wait_for_awaitable(_quietly(f())))  # type: ignore[misc]
            for f in run.stop_on_error
        ),
    ]
    if reachable:
        steps.append(lambda: wait_for_awaitable(_quietly(_disarm_and_drain(run.panda))))
    elif lost is not None and lost.restarted:
        # A new IOC: the PandA can be disarmed through it (for the next
        # scan), but the rows of this capture went with the old one.
        steps.append(lambda: wait_for_awaitable(_quietly(_disarm(run.panda))))
    # With the IOC gone, the file (where this host sees it) says how many rows
    # its writer flushed: they are registered too, so Tiled and the file agree.
    file_rows = rows_in_file() if lost is not None and rows_in_file else None
    if state["declared"]:
        steps += [
            (lambda n=name, d=devices: _collect(run.panda, d, n, file_rows))  # type: ignore[misc]
            for name, devices in run.streams.items()
        ]
    for step in steps:
        with contextlib.suppress(Exception):
            yield from step()
    for _ in range(3):
        if not state["open"]:
            break
        with contextlib.suppress(Exception):
            yield from bps.close_run(exit_status=_exit_status(exc), reason=_reason(exc))
            state["open"] = False


def _collect(
    panda: HDFPanda, devices: list[Any], name: str, file_rows: int | None
) -> MsgGenerator[Any]:
    """``bps.collect`` of a stream; with ``file_rows``, the PandA's index is
    the rows in its file (its IOC, which counted them, is gone)."""
    if file_rows is None or panda not in devices:
        return (yield from bps.collect(*devices, name=name))

    async def get_index() -> int:
        return file_rows

    # An instance attribute shadows the method for this collect only. Set past
    # Device.__setattr__, which reserves bluesky's protocol names: the IOC
    # that would answer get_index is gone, and bluesky's collect has no other
    # way to be told the index.
    object.__setattr__(panda, "get_index", get_index)
    try:
        return (yield from bps.collect(*devices, name=name))
    finally:
        vars(panda).pop("get_index", None)


async def _disarm(panda: HDFPanda, timeout: float = 5.0) -> None:
    await set_and_wait_for_other_value(
        panda.pcap.arm, False, panda.pcap.active, False, timeout=timeout
    )


async def _disarm_and_drain(panda: HDFPanda, timeout: float = 5.0) -> None:
    """Disarm PCAP, then wait until the IOC has written every row it received.

    PCAP's last rows reach the IOC after it reads ACTIVE low; PandABlocks-ioc
    says "Finished capture" when the PandA's end-of-data arrives, and
    NUM_CAPTURED (rows in the file) then catches up with NUM_RECEIVED.
    """
    await set_and_wait_for_other_value(
        panda.pcap.arm, False, panda.pcap.active, False, timeout=timeout
    )
    status = getattr(panda.data, "status", None)
    received = getattr(panda.data, "num_received", None)
    if status is None or received is None:  # an IOC without these records
        return
    await wait_for_value(
        status, lambda s: str(s).startswith("Finished capture"), timeout=timeout
    )
    rows = await received.get_value()
    await wait_for_value(panda.data.num_captured, lambda n: n >= rows, timeout=timeout)


async def _quietly(awaitable: Any) -> None:
    """Await, with a bound, swallowing errors: clean-up must not hang or mask."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(awaitable, timeout=10)
