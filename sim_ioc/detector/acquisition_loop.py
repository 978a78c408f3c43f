"""The cam's acquisitions: arming, triggers at their tick, frames as they are
read out.

``Acquire=1`` arms an :class:`~.timing.Acquisition` on the PandA's clock.
Trigger edges on the cabled TTLOUT (and, internally triggered, timers) are
followed *inside* the PandA's simulation, in tick order with the blocks, so
the motor position each exposure sees is the one in force at its tick. The
publishing loop (:meth:`AcquisitionLoop.run`) turns exposures into frames
(:mod:`.frames`) once their readout ends, posts the cam's counters and hands
the frames to the plugins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from caproto import ChannelData

from .. import ca
from ..panda.server import EVENT_BUDGET, PandaServer
from ..world import TICKS_PER_SECOND
from .attributes import AttributeDef
from .cam import Cam
from .config import DetectorConfig
from .frames import Stamp, render
from .hdf5 import Frame
from .records import is_on
from .timing import Acquisition, Exposure, TriggerMode
from .ttl import TtlinOutput

__all__ = ["IDLE_CHECK", "MIN_PUBLISH_INTERVAL", "AcquisitionLoop"]

log = logging.getLogger(__name__)

#: Shortest time between two publications of frames (NumCaptured, file).
MIN_PUBLISH_INTERVAL = 0.01
#: Longest sleep of the publishing loop while acquiring.
IDLE_CHECK = 0.1


class AcquisitionLoop:
    """The cam (:attr:`cam`, its records), what its ``Acquire`` and
    ``TriggerSource`` do, and the loop that publishes frames.

    Args:
        server: the simulated PandA whose clock and TTL outputs it follows.
        prefix: the cam's PV prefix, e.g. ``SIM:DET:cam1:``.
        pvs: the CA server's database the cam's records are added to.
        position_at: the x motor's user position at a tick.
        config: the detector's build-time settings (the cables among them).
        local_pv: looks up PVs served by this process (EPICS_PV attributes).
        attribute_defs: the NDAttributes each frame carries now.
        on_frames: the plugins' callback, given each batch of frames.
        y_position_at: the y motor's user position at a tick (None: 0).
    """

    def __init__(
        self,
        server: PandaServer,
        prefix: str,
        pvs: dict[str, ChannelData],
        position_at: Callable[[int], float],
        config: DetectorConfig,
        local_pv: Callable[[str], ChannelData | None],
        attribute_defs: Callable[[], list[AttributeDef]],
        on_frames: Callable[[list[Frame]], Awaitable[None]],
        y_position_at: Callable[[int], float] | None = None,
    ) -> None:
        self.server = server
        self.position_at = position_at
        self.y_position_at = y_position_at or (lambda ts: 0.0)
        self.local_pv = local_pv
        self.attribute_defs = attribute_defs
        self.on_frames = on_frames
        self.cam = Cam(
            prefix,
            pvs,
            config,
            on_acquire=self.put_acquire,
            on_trigger_source=self.put_trigger_source,
        )
        #: The cam's name in log messages.
        self.name = prefix.removesuffix(":")
        self._acq: Acquisition | None = None
        self._acq_done: asyncio.Future[None] | None = None
        self._stamps: dict[int, Stamp] = {}
        self._wake = asyncio.Event()
        self._quiet_until = 0.0  # monotonic time before which not to wake
        self._unwatch = server.panda.watch_ttlout(config.ttlout, self._on_ttl)
        #: The exposure output on a PandA TTLIN, if cabled.
        self.exposure_output: TtlinOutput | None = None
        if config.ttlin:
            self.exposure_output = TtlinOutput(
                server.panda.engine, f"TTLIN{config.ttlin}", config.ttlin_signal
            )

    # -- the cam's put hooks ------------------------------------------------------

    async def put_trigger_source(self, value: str) -> None:
        """``TriggerSource``: follow another TTLOUT."""
        number = int(value.removeprefix("TTLOUT"))
        self._unwatch()
        self._unwatch = self.server.panda.watch_ttlout(number, self._on_ttl)

    def _sync(self) -> int:
        """Bring the PandA's simulation up to the wall clock (every trigger
        edge until now has then been seen); returns the next tick."""
        self.server.panda.advance(self.server.now(), EVENT_BUDGET)
        return self.server.panda.now + 1

    async def put_acquire(self, value: Any) -> Any:
        """``Acquire``: arm (the put completes with the acquisition) or stop."""
        cam = self.cam
        if not is_on(value):
            await self._end_acquisition(aborted=True)
            return None
        if self._acq is not None and self._acq_done is not None:
            # Already acquiring: this put completes with the acquisition.
            return ca.Deferred("Acquire", asyncio.shield(self._acq_done))
        try:
            timing = cam.timing()
        except ValueError as exc:
            log.warning("%s: refused to acquire: %s", self.name, exc)
            await cam.state.post("Error")
            await cam.status.post(str(exc))
            raise ca.PutRefused(str(exc)) from None
        ts = self._sync()
        acq = self._acq = Acquisition(timing, ts)
        self._acq_done = asyncio.get_running_loop().create_future()
        self._stamps.clear()
        await cam.dropped.post(0)
        await cam.num_images_counter.post(0)
        await cam.state.post("Acquire")
        waiting = f" (triggers from {cam.trigger_source.value})"
        if timing.mode is TriggerMode.INTERNAL:
            waiting = ""
        await cam.status.post(f"Acquiring{waiting}")
        if timing.mode is TriggerMode.INTERNAL:
            self.server.panda.engine.call_at(ts, functools.partial(self._on_clock, acq))
        self._wake.set()
        return ca.Deferred("Acquire", asyncio.shield(self._acq_done))

    async def _end_acquisition(self, *, aborted: bool) -> None:
        cam = self.cam
        acq, done = self._acq, self._acq_done
        if acq is None:
            await cam.acquire.set("Done")
            return
        acq.stop()
        if self.exposure_output is not None:
            self.exposure_output.stop()
        self._acq, self._acq_done = None, None
        await cam.dropped.post(acq.dropped)  # drops seen since the last publish
        what = "stopped" if aborted else "complete"
        message = f"Acquisition {what}: {acq.taken} frame(s)"
        if acq.dropped:
            message += f", {acq.dropped} trigger(s) dropped (detector busy)"
        await cam.acquire.set("Done")
        await cam.state.post("Idle")
        await cam.status.post(message)
        if done is not None and not done.done():
            done.set_result(None)

    # -- triggers (called inside the PandA's simulation, at the tick) ------------

    def _stamp(self, acq: Acquisition, exposure: Exposure) -> None:
        # Sampled now, in tick order with every motion replan, so the world
        # still has the motion in force at this tick.
        self._stamps[exposure.index] = Stamp(
            self.position_at(exposure.start),
            exposure.start,
            exposure.index,
            y=self.y_position_at(exposure.start),
        )
        if self.exposure_output is not None:
            self.exposure_output.started(exposure, gated=acq.gate_open)

    def _poke(self) -> None:
        """Wake the publishing loop, unless it has just published: then its
        own timer brings it back within MIN_PUBLISH_INTERVAL anyway."""
        if time.monotonic() >= self._quiet_until:
            self._wake.set()

    def _wake_if_due(self, acq: Acquisition, exposure: Exposure | None) -> None:
        # The publishing loop sleeps until the oldest pending frame is ready:
        # wake it only if this exposure is now the oldest (it was idle).
        if exposure is not None and acq.next_ready() == exposure.ready:
            self._poke()

    def _on_ttl(self, ts: int, level: int) -> None:
        acq = self._acq
        if acq is None:
            return
        dropped, gate_was_open = acq.dropped, acq.gate_open
        exposure = acq.on_level(ts, level)
        if exposure is not None:
            self._stamp(acq, exposure)
        if gate_was_open and not acq.gate_open and self.exposure_output is not None:
            self.exposure_output.gate_closed(ts, ts + acq.timing.readout)
        gate_closed = not level and acq.timing.mode is TriggerMode.GATE
        if acq.dropped != dropped or gate_closed:
            self._poke()
        self._wake_if_due(acq, exposure)

    def _on_clock(self, acq: Acquisition, ts: int) -> None:
        if acq is not self._acq:
            return  # a stopped acquisition's timer
        exposure = acq.on_clock(ts)
        if exposure is not None:
            self._stamp(acq, exposure)
        self._wake_if_due(acq, exposure)
        nxt = acq.next_internal()
        if nxt is not None:
            self.server.panda.engine.call_at(
                nxt, functools.partial(self._on_clock, acq)
            )

    # -- frames -------------------------------------------------------------------

    def _wall_time(self, tick: int) -> float:
        return time.time() - (self.server.now() - tick) / TICKS_PER_SECOND

    def _attribute_value(self, attr: AttributeDef, stamp: Stamp) -> Any:
        cam = self.cam
        params: Mapping[str, Any] = {
            "ACQ_TIME": cam.acquire_time.value,
            "ACQ_PERIOD": cam.acquire_period.value,
            "NIMAGES": cam.num_images.value,
            "NIMAGES_COUNTER": stamp.index + 1,
            "ARRAY_COUNTER": cam.array_counter.value,
            "SIZE_X": cam.size_x.value,
            "SIZE_Y": cam.size_y.value,
            "SIM_POSITION": stamp.position,
            "SIM_Y_POSITION": stamp.y,
            "SIM_TRIGGER_TICK": stamp.tick,
        }
        if attr.kind == "PARAM":
            return params.get(attr.source, 0)
        if attr.kind == "EPICS_PV":
            pv = self.local_pv(attr.source)
            return 0 if pv is None else pv.value
        return 0

    async def _publish(self, exposures: list[Exposure]) -> None:
        cam = self.cam
        shape = cam.frame_shape
        frames: list[Frame] = []
        counter = int(cam.array_counter.value)
        for exposure in exposures:
            # The exposure's length is known now (a gate's only once it closed).
            stamp = dataclasses.replace(
                self._stamps.pop(exposure.index),
                exposure=exposure.end - exposure.start,
            )
            counter += 1
            frames.append(
                Frame(
                    render(stamp, shape),
                    counter,
                    self._wall_time(exposure.start),
                    {
                        a.name: self._attribute_value(a, stamp)
                        for a in self.attribute_defs()
                    },
                )
            )
        await cam.array_counter.set(counter)
        await cam.unique_id.post(counter)
        await cam.num_images_counter.post(exposures[-1].index + 1)
        for pv, size in zip(cam.array_size, (shape[1], shape[0], 0), strict=True):
            await pv.post(size)
        for pv, size in zip(cam.array_size_n, (shape[1], shape[0], 0), strict=True):
            await pv.post(size)
        if cam.array_callbacks.value == "Enable":
            await self.on_frames(frames)

    async def _process(self) -> bool:
        """Publish the frames read out by now; returns whether there were any."""
        acq = self._acq
        if acq is None:
            return False
        cam = self.cam
        self._sync()
        exposures = acq.read_out(self.server.panda.now)
        if exposures:
            await self._publish(exposures)
        if acq.dropped != cam.dropped.value:
            log.warning(
                "%s: %d trigger(s) dropped, the last on tick %d: the detector "
                "was busy (exposure + %g s readout)",
                self.name,
                acq.dropped,
                acq.dropped_at[-1],
                cam.readout_time.value,
            )
            await cam.dropped.post(acq.dropped)
            await cam.status.post(
                f"{acq.dropped} trigger(s) dropped: they came while the detector "
                "was still exposing or reading out"
            )
        if acq.finished:
            await self._end_acquisition(aborted=False)
        return bool(exposures)

    async def run(self) -> None:
        """Turn exposures into frames as their readout ends, until cancelled;
        then stop watching the TTLOUT."""
        try:
            while True:
                self._wake.clear()
                published = await self._process()
                delay: float | None = None
                acq = self._acq
                if acq is not None:
                    delay = IDLE_CHECK
                    ready = acq.next_ready()
                    if ready is not None:
                        wait = (ready - self.server.now()) / TICKS_PER_SECOND
                        delay = min(delay, max(0.0, wait))
                    if published:
                        # Fast trains: frames go out (and to the file) in
                        # batches, not one flush per frame.
                        self._quiet_until = time.monotonic() + MIN_PUBLISH_INTERVAL
                        delay = MIN_PUBLISH_INTERVAL if ready is None else delay
                        delay = max(delay, MIN_PUBLISH_INTERVAL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._unwatch()
