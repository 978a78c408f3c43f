"""The simulated area detector over Channel Access: a cam and an HDF5 plugin.

PV names and types follow ADCore (``ADBase.template``, ``NDPluginBase``,
``NDFile``, ``NDFileHDF5``), so ophyd-async's stock areaDetector classes connect
unchanged: ``SimDetector`` (internal triggering) and ``KinetixDetector``
(internal, external edge, external gate: its ``TriggerMode`` labels are the
ones served here). The timing is :mod:`.timing`'s, the images :mod:`.frames`',
the files :mod:`.hdf5`'s; this module only connects them to PVs, to the
PandA's TTL output and to the motor position.

Additions of our own, on the cam: ``TriggerSource`` (which PandA TTLOUT the
trigger cable comes from), ``ReadoutTime_RBV`` (dead time after each exposure)
and ``DroppedTriggers_RBV`` (triggers that arrived while the detector was busy,
since the last ``Acquire=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caproto import ChannelData

from .. import ca
from ..panda.server import EVENT_BUDGET, PandaServer
from ..world import TICKS_PER_SECOND
from .attributes import AttributeDef, AttributesError, parse_attributes
from .frames import STAMP_PIXELS, Stamp, render
from .hdf5 import AttributeSpec, Frame, HDF5Writer
from .timing import Acquisition, Exposure, Timing, TriggerMode
from .ttl import LevelSignal, TtlinOutput

__all__ = ["DetectorConfig", "SimAreaDetector"]

log = logging.getLogger(__name__)

#: The labels ophyd-async's enums expect.
DETECTOR_STATES = (
    "Idle",
    "Acquire",
    "Readout",
    "Correct",
    "Saving",
    "Aborting",
    "Error",
    "Waiting",
    "Initializing",
    "Disconnected",
    "Aborted",
)
DATA_TYPES = (
    "Int8",
    "UInt8",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float32",
    "Float64",
)
COLOR_MODES = ("Mono", "Bayer", "RGB1", "RGB2", "RGB3", "YUV444", "YUV422", "YUV421")
COMPRESSIONS = ("None", "N-bit", "szip", "zlib", "Blosc", "BSLZ4", "LZ4", "JPEG")
#: The frames' pixel type (served as DataType_RBV) and numpy dtype.
DATA_TYPE, DTYPE = "UInt16", "<u2"
MAX_SIZE = 1024
#: Longest NDAttributes XML accepted (ophyd-async writes the XML itself).
MAX_XML = 16384
#: Shortest time between two publications of frames (NumCaptured, file).
MIN_PUBLISH_INTERVAL = 0.01
#: Longest sleep of the publishing loop while acquiring.
IDLE_CHECK = 0.1


@dataclass(frozen=True)
class DetectorConfig:
    """How a simulated detector is built."""

    #: The PandA TTLOUT its trigger input is cabled to (``TriggerSource``).
    ttlout: int = 1
    #: Dead time after each exposure, seconds (ophyd-async's Kinetix logic
    #: assumes 1 ms).
    readout_time: float = 1e-3
    #: The PandA TTLIN the detector's exposure output is cabled to (0: none).
    ttlin: int = 1
    #: What that output shows: ``exposing`` or ``busy`` (exposing or reading
    #: out); see :mod:`.ttl`.
    ttlin_signal: LevelSignal = "exposing"
    width: int = 64
    height: int = 64


class Param:
    """An areaDetector parameter: ``NAME`` to write, ``NAME_RBV`` to read."""

    def __init__(self, setpoint: ca.Hooked | None, readback: ca.Hooked) -> None:
        self.setpoint = setpoint
        self.readback = readback

    @property
    def value(self) -> Any:
        return self.readback.value

    async def set(self, value: Any) -> None:
        """Change it from the server side (both PVs)."""
        if self.setpoint is not None:
            await self.setpoint.post(value)
        await self.readback.post(value)


#: Makes a channel: ``make(value, read_only=..., on_put=...)``.
ChannelMaker = Callable[..., ca.Hooked]
#: Validates a client's value: raise PutRefused, or return a replacement.
Check = Callable[[Any], Any]


def _boolean(labels: tuple[str, str]) -> ChannelMaker:
    def make(value: Any, **kw: Any) -> ca.Hooked:
        return ca.boolean(value in (True, 1, labels[1]), labels, **kw)

    return make


def _enum(choices: tuple[str, ...]) -> ChannelMaker:
    return functools.partial(ca.enum, choices)


def _long(max_length: int = 256) -> ChannelMaker:
    return functools.partial(ca.long_string, max_length=max_length)


class _Records:
    """Builds one plugin's PVs under a prefix."""

    def __init__(self, prefix: str, pvs: dict[str, ChannelData]) -> None:
        self.prefix = prefix
        self.pvs = pvs

    def ro(self, name: str, make: ChannelMaker, value: Any) -> ca.Hooked:
        """A read-only PV (``..._RBV`` alone)."""
        channel = make(value, read_only=True)
        self.pvs[self.prefix + name] = channel
        return channel

    def param(
        self,
        name: str,
        make: ChannelMaker,
        value: Any,
        check: Check | None = None,
        *,
        rbv: str = "_RBV",
    ) -> Param:
        """``name`` (writable, through ``check``) and ``name + rbv``."""
        readback = make(value, read_only=True)

        async def on_put(new: Any) -> Any:
            if check is None:
                await readback.post(new)
                return new
            result = await check(new)
            if isinstance(result, ca.Deferred):
                await readback.post(result.value)
                return result
            if result is not None:
                new = result
            await readback.post(new)
            return new

        setpoint = make(value, on_put=on_put)
        self.pvs[self.prefix + name] = setpoint
        if rbv:
            self.pvs[self.prefix + name + rbv] = readback
        return Param(setpoint, readback)


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> tuple[AttributeDef, ...]:
    """``parse_attributes``, once per distinct NDAttributesFile value."""
    return tuple(parse_attributes(text))


def _is_on(value: Any) -> bool:
    """A two-state PV's value (its label, after caproto's conversion) is 1."""
    return value in (1, True, "Acquire", "Capture", "Flush", "Enable", "Yes", "On")


def _refuse(message: str) -> None:
    raise ca.PutRefused(message)


async def _non_negative(value: float) -> None:
    if value < 0:
        _refuse("must not be negative")


class SimAreaDetector:
    """A cam (``<prefix>cam1:``) and an HDF5 plugin (``<prefix>HDF1:``).

    Args:
        server: the simulated PandA whose clock, world and TTL outputs it
            shares.
        prefix: PV prefix, e.g. ``SIM:DET:``.
        position_at: the motor's user position at a tick (what the sample
            under the beam is seen at).
        config: build-time settings.
        local_pv: looks up PVs served by this process, for NDAttributes of
            type EPICS_PV (others read 0, as ADCore's for an unconnected PV).
    """

    def __init__(
        self,
        server: PandaServer,
        prefix: str,
        position_at: Callable[[int], float],
        config: DetectorConfig | None = None,
        local_pv: Callable[[str], ChannelData | None] | None = None,
    ) -> None:
        self.server = server
        self.prefix = prefix
        self.position_at = position_at
        self.config = config = config or DetectorConfig()
        self.local_pv = local_pv or (lambda name: None)
        self.pvs: dict[str, ChannelData] = {}
        self._acq: Acquisition | None = None
        self._acq_done: asyncio.Future[None] | None = None
        self._stamps: dict[int, Stamp] = {}
        self._wake = asyncio.Event()
        self._quiet_until = 0.0  # monotonic time before which not to wake
        self._writer: HDF5Writer | None = None
        self._capture_done: asyncio.Future[None] | None = None
        self._build_cam(prefix + "cam1:")
        self._build_hdf(prefix + "HDF1:")
        self._unwatch = server.panda.watch_ttlout(config.ttlout, self._on_ttl)
        self.exposure_output: TtlinOutput | None = None
        if config.ttlin:
            self.exposure_output = TtlinOutput(
                server.panda.engine, f"TTLIN{config.ttlin}", config.ttlin_signal
            )

    # -- the cam ------------------------------------------------------------------

    def _build_cam(self, prefix: str) -> None:
        cfg = self.config
        r = _Records(prefix, self.pvs)
        s, i, d = ca.string, ca.integer, ca.double
        self.cam_port = "DET.CAM"
        r.ro("PortName_RBV", s, self.cam_port)
        r.ro("Manufacturer_RBV", s, "panda-flyscan")
        r.ro("Model_RBV", s, "Simulated area detector")
        r.ro("SerialNumber_RBV", s, "SIM-0001")
        r.ro("SDKVersion_RBV", s, "sim")
        r.ro("FirmwareVersion_RBV", s, "sim")
        r.ro("ADCoreVersion_RBV", s, "3.12.1")
        r.ro("DriverVersion_RBV", s, "panda-flyscan sim")
        self.unique_id = r.ro("UniqueId_RBV", i, 0)
        self.cam_attributes = r.param(
            "NDAttributesFile", _long(MAX_XML), "", self._check_attributes, rbv=""
        )
        r.ro("MaxSizeX_RBV", i, MAX_SIZE)
        r.ro("MaxSizeY_RBV", i, MAX_SIZE)
        self.size_x = r.param("SizeX", i, cfg.width, self._check_size)
        self.size_y = r.param("SizeY", i, cfg.height, self._check_size)
        self.array_size = [
            r.ro("ArraySizeX_RBV", i, cfg.width),
            r.ro("ArraySizeY_RBV", i, cfg.height),
            r.ro("ArraySizeZ_RBV", i, 0),
        ]
        self.array_size_n = [
            r.ro("ArraySize0_RBV", i, cfg.width),
            r.ro("ArraySize1_RBV", i, cfg.height),
            r.ro("ArraySize2_RBV", i, 0),
        ]
        r.ro("DataType_RBV", _enum(DATA_TYPES), DATA_TYPE)
        r.ro("ColorMode_RBV", _enum(COLOR_MODES), "Mono")
        self.array_counter = r.param("ArrayCounter", i, 0)
        self.array_callbacks = r.param(
            "ArrayCallbacks", _boolean(("Disable", "Enable")), True
        )
        self.acquire_time = r.param(
            "AcquireTime",
            functools.partial(d, precision=6, units="s"),
            0.01,
            _non_negative,
        )
        self.acquire_period = r.param(
            "AcquirePeriod",
            functools.partial(d, precision=6, units="s"),
            0.0,
            _non_negative,
        )
        self.num_images = r.param("NumImages", i, 1, self._check_num_images)
        self.image_mode = r.param(
            "ImageMode", _enum(("Single", "Multiple", "Continuous")), "Multiple"
        )
        self.num_images_counter = r.ro("NumImagesCounter_RBV", i, 0)
        self.acquire = r.param(
            "Acquire", _boolean(("Done", "Acquire")), False, self._put_acquire
        )
        self.state = r.ro("DetectorState_RBV", _enum(DETECTOR_STATES), "Idle")
        self.status = r.ro("StatusMessage_RBV", _long(), "Idle")
        r.param("WaitForPlugins", _boolean(("No", "Yes")), False, rbv="")
        self.trigger_mode = r.param(
            "TriggerMode", _enum(tuple(m.value for m in TriggerMode)), "Internal"
        )
        # ADKinetix's readout port: served so KinetixDetector connects; inert.
        r.param("ReadoutPortIdx", _enum(("1", "2", "3", "4")), "1")
        self.trigger_source = r.param(
            "TriggerSource",
            _enum(tuple(f"TTLOUT{n}" for n in range(1, 11))),
            f"TTLOUT{cfg.ttlout}",
            self._put_trigger_source,
        )
        self.readout_time = r.ro(
            "ReadoutTime_RBV",
            functools.partial(d, precision=6, units="s"),
            cfg.readout_time,
        )
        self.dropped = r.ro("DroppedTriggers_RBV", i, 0)

    async def _check_size(self, value: int) -> int:
        # Clamped as ADSimDetector does; the stamp needs its pixels.
        return min(max(int(value), STAMP_PIXELS), MAX_SIZE)

    async def _check_num_images(self, value: int) -> None:
        if value < 1:
            _refuse("NumImages must be at least 1")

    async def _check_attributes(self, value: str) -> None:
        try:
            parse_attributes(value)
        except AttributesError as exc:
            _refuse(str(exc))

    async def _put_trigger_source(self, value: str) -> None:
        number = int(value.removeprefix("TTLOUT"))
        self._unwatch()
        self._unwatch = self.server.panda.watch_ttlout(number, self._on_ttl)

    def _sync(self) -> int:
        """Bring the PandA's simulation up to the wall clock (every trigger
        edge until now has then been seen); returns the next tick."""
        self.server.panda.advance(self.server.now(), EVENT_BUDGET)
        return self.server.panda.now + 1

    def _timing(self) -> Timing:
        """The acquisition the parameters ask for; ValueError if they are
        inconsistent."""
        mode = TriggerMode(self.trigger_mode.value)
        exposure = float(self.acquire_time.value)
        period = float(self.acquire_period.value)
        readout = float(self.readout_time.value)
        image_mode = self.image_mode.value
        frames = {"Single": 1, "Continuous": 0}.get(
            image_mode, int(self.num_images.value)
        )
        if mode is TriggerMode.EDGE and period > 0 and exposure + readout > period:
            raise ValueError(
                f"AcquireTime {exposure:g} s + readout {readout:g} s is longer than "
                f"the trigger period {period:g} s (AcquirePeriod): triggers would "
                "be dropped"
            )
        if mode is not TriggerMode.GATE and exposure <= 0:
            raise ValueError("AcquireTime must be positive")

        def ticks(seconds: float) -> int:
            return round(seconds * TICKS_PER_SECOND)

        return Timing(mode, ticks(exposure), ticks(readout), ticks(period), frames)

    async def _put_acquire(self, value: Any) -> Any:
        if not _is_on(value):
            await self._end_acquisition(aborted=True)
            return None
        if self._acq is not None and self._acq_done is not None:
            # Already acquiring: this put completes with the acquisition.
            return ca.Deferred("Acquire", asyncio.shield(self._acq_done))
        try:
            timing = self._timing()
        except ValueError as exc:
            log.warning("%scam1: refused to acquire: %s", self.prefix, exc)
            await self.state.post("Error")
            await self.status.post(str(exc))
            raise ca.PutRefused(str(exc)) from None
        ts = self._sync()
        acq = self._acq = Acquisition(timing, ts)
        self._acq_done = asyncio.get_running_loop().create_future()
        self._stamps.clear()
        await self.dropped.post(0)
        await self.num_images_counter.post(0)
        await self.state.post("Acquire")
        waiting = f" (triggers from {self.trigger_source.value})"
        if timing.mode is TriggerMode.INTERNAL:
            waiting = ""
        await self.status.post(f"Acquiring{waiting}")
        if timing.mode is TriggerMode.INTERNAL:
            self.server.panda.engine.call_at(ts, functools.partial(self._on_clock, acq))
        self._wake.set()
        return ca.Deferred("Acquire", asyncio.shield(self._acq_done))

    async def _end_acquisition(self, *, aborted: bool) -> None:
        acq, done = self._acq, self._acq_done
        if acq is None:
            await self.acquire.set("Done")
            return
        acq.stop()
        if self.exposure_output is not None:
            self.exposure_output.stop()
        self._acq, self._acq_done = None, None
        await self.dropped.post(acq.dropped)  # drops seen since the last publish
        what = "stopped" if aborted else "complete"
        message = f"Acquisition {what}: {acq.taken} frame(s)"
        if acq.dropped:
            message += f", {acq.dropped} trigger(s) dropped (detector busy)"
        await self.acquire.set("Done")
        await self.state.post("Idle")
        await self.status.post(message)
        if done is not None and not done.done():
            done.set_result(None)

    # -- triggers (called inside the PandA's simulation, at the tick) ------------

    def _stamp(self, acq: Acquisition, exposure: Exposure) -> None:
        # Sampled now, in tick order with every motion replan, so the world
        # still has the motion in force at this tick.
        self._stamps[exposure.index] = Stamp(
            self.position_at(exposure.start), exposure.start, exposure.index
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
        params: Mapping[str, Any] = {
            "ACQ_TIME": self.acquire_time.value,
            "ACQ_PERIOD": self.acquire_period.value,
            "NIMAGES": self.num_images.value,
            "NIMAGES_COUNTER": stamp.index + 1,
            "ARRAY_COUNTER": self.array_counter.value,
            "SIZE_X": self.size_x.value,
            "SIZE_Y": self.size_y.value,
            "SIM_POSITION": stamp.position,
            "SIM_TRIGGER_TICK": stamp.tick,
        }
        if attr.kind == "PARAM":
            return params.get(attr.source, 0)
        if attr.kind == "EPICS_PV":
            pv = self.local_pv(attr.source)
            return 0 if pv is None else pv.value
        return 0

    async def _publish(self, exposures: list[Exposure]) -> None:
        shape = (int(self.size_y.value), int(self.size_x.value))
        frames: list[Frame] = []
        counter = int(self.array_counter.value)
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
                        for a in self._attribute_defs()
                    },
                )
            )
        await self.array_counter.set(counter)
        await self.unique_id.post(counter)
        await self.num_images_counter.post(exposures[-1].index + 1)
        for pv, size in zip(self.array_size, (shape[1], shape[0], 0), strict=True):
            await pv.post(size)
        for pv, size in zip(self.array_size_n, (shape[1], shape[0], 0), strict=True):
            await pv.post(size)
        if self.array_callbacks.value == "Enable":
            await self._hdf_receive(frames)

    async def _process(self) -> bool:
        """Publish the frames read out by now; returns whether there were any."""
        acq = self._acq
        if acq is None:
            return False
        self._sync()
        exposures = acq.read_out(self.server.panda.now)
        if exposures:
            await self._publish(exposures)
        if acq.dropped != self.dropped.value:
            log.warning(
                "%scam1: %d trigger(s) dropped, the last on tick %d: the detector "
                "was busy (exposure + %g s readout)",
                self.prefix,
                acq.dropped,
                acq.dropped_at[-1],
                self.readout_time.value,
            )
            await self.dropped.post(acq.dropped)
            await self.status.post(
                f"{acq.dropped} trigger(s) dropped: they came while the detector "
                "was still exposing or reading out"
            )
        if acq.finished:
            await self._end_acquisition(aborted=False)
        return bool(exposures)

    async def run(self) -> None:
        """Turn exposures into frames as their readout ends, until cancelled."""
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
            if self._writer is not None:
                self._writer.close()

    # -- the HDF5 plugin ------------------------------------------------------------

    def _build_hdf(self, prefix: str) -> None:
        r = _Records(prefix, self.pvs)
        s, i = ca.string, ca.integer
        self.hdf_port = "DET.HDF1"
        r.ro("PortName_RBV", s, self.hdf_port)
        r.ro("ADCoreVersion_RBV", s, "3.12.1")
        r.ro("DriverVersion_RBV", s, "3.12.1")
        r.ro("PluginType_RBV", s, "NDFileHDF5")
        self.hdf_unique_id = r.ro("UniqueId_RBV", i, 0)
        self.hdf_attributes = r.param(
            "NDAttributesFile", _long(MAX_XML), "", self._check_attributes, rbv=""
        )
        self.hdf_sizes = {
            name: r.ro(name, i, 0)
            for name in (
                "ArraySizeX_RBV",
                "ArraySizeY_RBV",
                "ArraySizeZ_RBV",
                "ArraySize0_RBV",
                "ArraySize1_RBV",
                "ArraySize2_RBV",
                "ArraySize0",
                "ArraySize1",
            )
        }
        r.ro("DataType_RBV", _enum(DATA_TYPES), DATA_TYPE)
        r.ro("ColorMode_RBV", _enum(COLOR_MODES), "Mono")
        self.hdf_array_counter = r.param("ArrayCounter", i, 0)
        self.nd_array_port = r.param("NDArrayPort", s, self.cam_port)
        self.enable_callbacks = r.param(
            "EnableCallbacks", _boolean(("Disable", "Enable")), False
        )
        r.param("NDArrayAddress", i, 0)
        r.param("QueueSize", i, 20)
        self.file_path = r.param("FilePath", _long(), "", self._put_file_path)
        self.file_name = r.param("FileName", _long(), "")
        self.path_exists = r.ro("FilePathExists_RBV", _boolean(("No", "Yes")), False)
        self.file_template = r.param("FileTemplate", _long(), "%s%s_%6.6d.h5")
        self.full_file_name = r.ro("FullFileName_RBV", _long(), "")
        self.file_number = r.param("FileNumber", i, 0)
        self.auto_increment = r.param("AutoIncrement", _boolean(("No", "Yes")), False)
        self.write_mode = r.param(
            "FileWriteMode", _enum(("Single", "Capture", "Stream")), "Single"
        )
        self.num_capture = r.param("NumCapture", i, 1, _non_negative)
        self.num_captured = r.ro("NumCaptured_RBV", i, 0)
        self.capture = r.param(
            "Capture", _boolean(("Done", "Capture")), False, self._put_capture
        )
        self.create_directory = r.param("CreateDirectory", i, 0)
        self.write_status = r.ro("WriteStatus", _enum(("Write OK", "Write error")), "")
        self.write_message = r.ro("WriteMessage", _long(), "")
        r.param("PositionMode", _boolean(("Off", "On")), False)
        self.compression = r.param("Compression", _enum(COMPRESSIONS), "None")
        self.extra_dims = r.param("NumExtraDims", i, 0)
        self.swmr = r.param("SWMRMode", _boolean(("Off", "On")), False)
        r.param("FlushNow", _boolean(("Done", "Flush")), False, self._put_flush, rbv="")
        self.xml_layout = r.param("XMLFileName", _long(), "")
        self.frames_per_chunk = r.param("NumFramesChunks", i, 0, _non_negative)
        r.param("ChunkSizeAuto", _boolean(("No", "Yes")), False)
        self.lazy_open = r.param("LazyOpen", _boolean(("No", "Yes")), False)

    async def _error(self, message: str) -> None:
        log.warning("%s: %s", self.prefix + "HDF1", message)
        await self.write_status.post("Write error")
        await self.write_message.post(message)

    async def _ok(self) -> None:
        await self.write_status.post("Write OK")
        await self.write_message.post("")

    @staticmethod
    def _create_dirs(path: Path, depth: int) -> None:
        """ADCore's ``CreateDirectory``: 0 creates nothing; -N up to N missing
        directories at the end of the path; N creates those below the first N
        levels (which must exist)."""
        if depth == 0 or path.is_dir():
            return
        parts = path.parts
        existing = 0
        while existing < len(parts) and Path(*parts[: existing + 1]).is_dir():
            existing += 1
        missing = len(parts) - existing
        allowed = missing <= -depth if depth < 0 else existing - 1 >= depth
        if allowed:
            with contextlib.suppress(OSError):
                path.mkdir(parents=True, exist_ok=True)

    async def _check_path(self, text: str) -> str | None:
        """Whether the directory exists and files can be created in it
        (FilePathExists_RBV); returns the problem, if any."""
        if not text:
            return "FilePath is empty"
        path = Path(text)
        self._create_dirs(path, int(self.create_directory.value))
        if not path.is_dir():
            return f"directory {text} does not exist"
        try:
            # Writable means a file can be made: root ignores mode bits, and
            # read-only filesystems are not in them.
            fd, probe = tempfile.mkstemp(prefix=".panda-flyscan-", dir=path)
        except OSError as exc:
            return f"directory {text} is not writable: {exc.strerror}"
        os.close(fd)
        os.unlink(probe)
        return None

    async def _put_file_path(self, value: str) -> str:
        # As ADCore: the path gets a trailing separator, and its existence
        # is checked (and reported) on every write.
        if value and not value.endswith("/"):
            value += "/"
        problem = await self._check_path(value)
        await self.path_exists.post(problem is None)
        if problem is None:
            await self._ok()
        else:
            await self._error(problem)
        return value

    def _attribute_defs(self) -> list[AttributeDef]:
        """The NDAttributes the cam and the plugin attach to each frame now
        (checked when written; a file that has gone since counts as none)."""
        defs: list[AttributeDef] = []
        for param in (self.cam_attributes, self.hdf_attributes):
            try:
                defs.extend(_parsed(str(param.value)))
            except AttributesError as exc:
                log.warning("%s: NDAttributes ignored: %s", self.prefix, exc)
        return defs

    def _full_file_name(self) -> str:
        template = str(self.file_template.value)
        try:
            return template % (
                self.file_path.value,
                self.file_name.value,
                int(self.file_number.value),
            )
        except TypeError:
            try:  # a template without the number, as ophyd-async's "%s%s.h5"
                return template % (self.file_path.value, self.file_name.value)
            except TypeError as exc:
                raise ValueError(f"bad FileTemplate {template!r}: {exc}") from None

    async def _open(self) -> HDF5Writer:
        """Open the capture's file (ValueError/OSError saying why not)."""
        problem = await self._check_path(str(self.file_path.value))
        await self.path_exists.post(problem is None)
        if problem is not None:
            raise ValueError(problem)
        compression = {"None": None, "zlib": "gzip"}.get(self.compression.value, "")
        if compression == "":
            raise ValueError(f"Compression {self.compression.value} is not simulated")
        defs = self._attribute_defs()
        chunk = int(self.frames_per_chunk.value)
        if chunk == 0:
            chunk = 1
            await self.frames_per_chunk.set(chunk)
        name = self._full_file_name()
        writer = HDF5Writer(
            Path(name),
            (int(self.size_y.value), int(self.size_x.value)),
            DTYPE,
            chunk_frames=chunk,
            attributes=[AttributeSpec(a.name, a.dtype) for a in defs],
            swmr=self.swmr.value == "On",
            compression=compression,
        )
        await self.full_file_name.post(name)
        await self._ok()
        log.info("%s: writing %s", self.prefix + "HDF1", name)
        return writer

    async def _put_capture(self, value: Any) -> Any:
        if not _is_on(value):
            await self._stop_capture()
            return None
        if self._capture_done is not None:
            return ca.Deferred("Capture", asyncio.shield(self._capture_done))
        unsupported = {
            f"FileWriteMode {self.write_mode.value}": self.write_mode.value != "Stream",
            "an XMLFileName layout": bool(self.xml_layout.value),
            "NumExtraDims > 0": int(self.extra_dims.value) != 0,
        }
        for what, wanted in unsupported.items():
            if wanted:
                message = f"{what} is not simulated (Stream, default layout only)"
                await self._error(message)
                raise ca.PutRefused(message)
        await self.num_captured.post(0)
        try:
            # Checked now even with LazyOpen (where ADCore would only fail at
            # the first frame), so a bad path fails before a scan starts.
            problem = await self._check_path(str(self.file_path.value))
            await self.path_exists.post(problem is None)
            if problem is not None:
                raise ValueError(problem)
            self._full_file_name()
            if self.lazy_open.value != "Yes":
                self._writer = await self._open()
        except (ValueError, OSError, AttributesError) as exc:
            await self._error(f"cannot capture: {exc}")
            raise ca.PutRefused(str(exc)) from None
        self._capture_done = asyncio.get_running_loop().create_future()
        await self.capture.readback.post("Capture")
        return ca.Deferred("Capture", asyncio.shield(self._capture_done))

    async def _stop_capture(self) -> None:
        done, self._capture_done = self._capture_done, None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self.auto_increment.value == "Yes":
                await self.file_number.set(int(self.file_number.value) + 1)
        await self.capture.set("Done")
        if done is not None and not done.done():
            done.set_result(None)

    async def _put_flush(self, value: Any) -> None:
        if _is_on(value) and self._writer is not None:
            self._writer.flush()

    async def _hdf_receive(self, frames: list[Frame]) -> None:
        """The plugin's callback: frames arrive from the cam."""
        if (
            self.enable_callbacks.value != "Enable"
            or self.nd_array_port.value != self.cam_port
        ):
            return
        height, width = frames[-1].image.shape
        sizes = {"X": width, "Y": height, "Z": 0, "0": width, "1": height, "2": 0}
        for name, pv in self.hdf_sizes.items():
            await pv.post(sizes[name.removesuffix("_RBV")[-1]])
        await self.hdf_array_counter.set(
            int(self.hdf_array_counter.value) + len(frames)
        )
        await self.hdf_unique_id.post(frames[-1].unique_id)
        if self._capture_done is None:
            return
        limit = int(self.num_capture.value)
        if limit:
            frames = frames[: max(0, limit - int(self.num_captured.value))]
        try:
            if self._writer is None:
                self._writer = await self._open()
            self._writer.write(frames)
        except (ValueError, OSError, AttributesError) as exc:
            await self._error(f"cannot write: {exc}")
            await self._stop_capture()
            return
        await self.num_captured.post(self._writer.frames)
        if limit and self._writer.frames >= limit:
            await self._stop_capture()
