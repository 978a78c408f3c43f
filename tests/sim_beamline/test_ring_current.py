"""The storage ring's beam current, ``<prefix>:RING:CURRENT``, and bluesky's
stock suspenders on it.

The session's beamline serves the default current (300 mA). Each test that
trips the beam puts it back (the ``full_ring`` fixture), as other tests share
the beamline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bluesky.plans as bp
import pytest
from aioca import CANothing, caput
from bluesky import Msg, RunEngine
from bluesky.suspenders import SuspendFloor
from ophyd import EpicsSignal, EpicsSignalRO
from ophyd_async.core import observe_value
from ophyd_async.epics.core import epics_signal_rw
from pydantic import ValidationError

from panda_flyscan.app.cli.sim import _simulator_config
from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from sim_ioc.config import SimulatorConfig

#: How long a CA answer (connection, put, monitor) may take on a loaded machine.
TIMEOUT = 20.0


def _current_pv(beamline: SimulatedBeamline) -> str:
    return f"{beamline.prefix}:RING:CURRENT"


def _dump_pv(beamline: SimulatedBeamline) -> str:
    return f"{beamline.prefix}:RING:DUMP"


@pytest.fixture
def full_ring(beamline: SimulatedBeamline) -> Iterator[float]:
    """The configured current; the ring is refilled to it after the test."""
    configured = beamline.simulator.ring_current
    yield configured
    current = EpicsSignal(_current_pv(beamline), name="ring_current")
    dump = EpicsSignal(_dump_pv(beamline), name="ring_dump")
    for signal in (current, dump):
        signal.wait_for_connection(timeout=TIMEOUT)
    dump.put(0, wait=True, timeout=TIMEOUT)
    current.put(configured, wait=True, timeout=TIMEOUT)
    for signal in (current, dump):
        signal.destroy()


@pytest.fixture
async def ring_current(
    beamline: SimulatedBeamline, full_ring: float
) -> AsyncIterator[Any]:
    """ophyd-async's stock CA signal on ``<prefix>:RING:CURRENT``."""
    signal = epics_signal_rw(float, f"ca://{_current_pv(beamline)}", name="ring")
    await signal.connect(timeout=TIMEOUT)
    yield signal


def _watch_until_beam(signal: Any, timeout: float, at_least: float = 200.0) -> int:
    """Subscribe to ``signal`` and wait until its latest value is ``at_least``
    mA or more; return the subscription, to keep for the test. The CA client
    shares a PV's subscription between signals and hands a newcomer the
    last value it holds first, which may be stale (an earlier test's dump):
    subscribed (and so monitored) from here on, this signal's later
    subscribers (the suspender) start from its own latest value instead."""
    beam = threading.Event()

    def seen(value: float, **_: Any) -> None:
        if value >= at_least:
            beam.set()
        else:
            beam.clear()

    token = signal.subscribe(seen, run=True)
    assert beam.wait(timeout), f"{signal.name} never read {at_least} mA or more"
    return token


def test_ring_current_is_an_option() -> None:
    assert SimulatorConfig().ring_current == 300.0
    assert _simulator_config({"ring_current": "250"}).ring_current == 250.0
    with pytest.raises(ValidationError, match="ring_current"):
        SimulatorConfig(ring_current=-1.0)


async def test_the_pv_reads_the_configured_current(
    ring_current: Any, full_ring: float
) -> None:
    assert full_ring == 300.0  # the session's beamline: the default
    assert await ring_current.get_value() == full_ring
    (description,) = (await ring_current.describe()).values()
    assert description["units"] == "mA"
    assert description["precision"] == 1


async def test_a_put_is_seen_by_a_monitor_at_once(
    beamline: SimulatedBeamline, ring_current: Any, full_ring: float
) -> None:
    # Another client's put (as caput would), seen by the signal's monitor.
    other = epics_signal_rw(float, f"ca://{_current_pv(beamline)}", name="other")
    dump = epics_signal_rw(bool, f"ca://{_dump_pv(beamline)}", name="dump")
    await asyncio.gather(other.connect(timeout=TIMEOUT), dump.connect(timeout=TIMEOUT))
    seen: list[float] = []

    async def watch() -> None:
        async for value in observe_value(ring_current, timeout=TIMEOUT):
            seen.append(value)
            if value == 0.0:
                return

    watcher = asyncio.create_task(watch())
    await other.set(0.0)
    await asyncio.wait_for(watcher, TIMEOUT)
    assert seen == [full_ring, 0.0]
    # A negative current is refused (the put callback fails; ophyd-async's
    # Signal.set would not say so), and changes nothing.
    with pytest.raises(CANothing):
        await caput(_current_pv(beamline), -5.0, wait=True, timeout=TIMEOUT)
    assert await ring_current.get_value() == 0.0
    # DUMP: 0 refills the ring to the configured current, 1 dumps it.
    await dump.set(False)
    assert await ring_current.get_value() == full_ring
    await dump.set(True)
    assert await ring_current.get_value() == 0.0
    await dump.set(False)
    assert await ring_current.get_value() == full_ring


def test_suspend_floor_suspends_a_count_while_the_beam_is_down(
    beamline: SimulatedBeamline, full_ring: float
) -> None:
    """bluesky's stock ``SuspendFloor`` on an ophyd ``EpicsSignalRO`` (ophyd
    over caproto's client) suspends ``count`` when the current is put to 0,
    and resumes it once the current is back and has stayed up 0.5 s."""
    num, sleep = 4, 0.5
    current = EpicsSignalRO(_current_pv(beamline), name="ring_current")
    writer = EpicsSignal(_current_pv(beamline), name="ring_writer")
    for signal in (current, writer):
        signal.wait_for_connection(timeout=TIMEOUT)
    watching = _watch_until_beam(current, TIMEOUT)
    RE = RunEngine({})
    RE.record_interruptions = True  # the suspension, as an event
    documents: list[tuple[str, dict[str, Any]]] = []
    streams: dict[str, str] = {}  # descriptor uid -> stream name
    first_reading, suspended = threading.Event(), threading.Event()

    def collect(name: str, doc: dict[str, Any]) -> None:
        documents.append((name, doc))
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event" and streams[doc["descriptor"]] == "primary":
            first_reading.set()
        elif name == "event" and streams[doc["descriptor"]] == "interruptions":
            suspended.set()

    #: When the run engine started and ended suspensions (its messages).
    suspension: dict[str, list[float]] = {
        "_start_suspender": [],
        "_resume_from_suspender": [],
    }

    def watch_messages(msg: Msg) -> None:
        if msg.command in suspension:
            suspension[msg.command].append(time.time())

    RE.subscribe(collect)
    # bluesky declares msg_hook as None (its default).
    RE.msg_hook = watch_messages  # pyright: ignore[reportAttributeAccessIssue]
    #: What the suspender was told, as (time, value): its monitor's updates.
    seen: list[tuple[float, float]] = []

    class Recorded(SuspendFloor):
        def __call__(self, value: Any, **kwargs: Any) -> None:
            seen.append((time.time(), float(value)))
            super().__call__(value, **kwargs)

    suspender = Recorded(current, suspend_thresh=50, resume_thresh=200, sleep=sleep)
    RE.install_suspender(suspender)
    trips: list[str] = []
    refilled_at: list[float] = []
    #: When the test dumped the beam. Whatever the suspender saw before is
    #: not this test's: the CA client hands a new subscriber the PV's last
    #: value, which an earlier test's signal may have left stale (a dump).
    dumped_at: list[float] = []

    def trip_the_beam() -> None:
        """Dump the beam after the first reading; refill it once the run
        engine has recorded the suspension."""
        try:
            if not first_reading.wait(TIMEOUT):
                trips.append("no reading came")
                return
            suspended.clear()
            dumped_at.append(time.time())
            writer.put(0.0, wait=True, timeout=TIMEOUT)
            if not suspended.wait(TIMEOUT):
                trips.append("the run engine did not suspend")
            else:
                trips.append("suspended")
            refilled_at.append(time.time())
            writer.put(full_ring, wait=True, timeout=TIMEOUT)
        except Exception as exc:  # reported by the test's thread
            trips.append(f"failed: {exc!r}")

    tripper = threading.Thread(target=trip_the_beam, daemon=True)
    try:
        tripper.start()
        # ophyd v1's signals are untyped: not bluesky's Readable to pyright.
        plan = bp.count([current], num=num, delay=sleep)  # pyright: ignore[reportArgumentType]
        RE(plan)
        tripper.join(TIMEOUT)
    finally:
        RE.remove_suspender(suspender)
        RE.loop.call_soon_threadsafe(RE.loop.stop)
        current.unsubscribe(watching)
        for signal in (current, writer):
            signal.destroy()
    # (Not suspender.tripped then: it may already read the refilled beam.)
    assert trips == ["suspended"]
    assert suspender.tripped is False  # the beam is back
    (stop,) = [doc for name, doc in documents if name == "stop"]
    assert stop["exit_status"] == "success"
    # The suspension the dump caused, with its justification.
    (dump,) = dumped_at
    interruptions = [
        doc
        for name, doc in documents
        if name == "event" and streams[doc["descriptor"]] == "interruptions"
    ]
    after = [
        doc["data"]["interruption"] for doc in interruptions if doc["time"] >= dump
    ]
    assert after, (interruptions, seen)
    assert "ring_current = 0.0 fell below 50" in after[0], (after, seen)
    # Released only once the current had been back for the suspender's sleep:
    # from the first value over the resume threshold that followed the dump,
    # as the suspender saw them (a loaded machine delivers monitor updates
    # late, so not from the refill's put).
    start = next(t for t in suspension["_start_suspender"] if t >= dump)
    resume = next(t for t in suspension["_resume_from_suspender"] if t >= start)
    values = [(t, v) for t, v in seen if t >= dump]
    dumped = next(i for i, (_, v) in enumerate(values) if v < 50)
    back = next(t for t, v in values[dumped:] if v >= 200)
    assert resume - back >= sleep, (seen, suspension)
    assert refilled_at, trips
    primary = [
        doc
        for name, doc in documents
        if name == "event" and streams[doc["descriptor"]] == "primary"
    ]
    # Every point taken, none without beam, none while suspended; the point
    # the suspension cut short is taken again after it (the run engine
    # rewinds to its checkpoint), so a sequence number may come twice.
    assert {doc["seq_num"] for doc in primary} == set(range(1, num + 1))
    assert num <= len(primary) <= num + len(suspension["_start_suspender"])
    assert all(doc["data"]["ring_current"] == full_ring for doc in primary), (
        [(doc["time"], doc["seq_num"], doc["data"]["ring_current"]) for doc in primary],
        seen,
        suspension,
        dumped_at,
        refilled_at,
    )
    assert not [doc for doc in primary if start < doc["time"] < resume]
