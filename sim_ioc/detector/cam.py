"""The cam's PVs (``<prefix>cam1:``), as ADCore's ``ADBase.template`` names them.

The records and the checks on what a client writes to them; what ``Acquire``
and ``TriggerSource`` do is the acquisition loop's (:mod:`.acquisition_loop`),
handed in as put hooks. :meth:`Cam.timing` reads the parameters as the
:class:`~.timing.Timing` of the next acquisition.

Additions of our own: ``TriggerSource`` (which PandA TTLOUT the trigger cable
comes from), ``ReadoutTime_RBV`` (dead time after each exposure) and
``DroppedTriggers_RBV`` (triggers that arrived while the detector was busy,
since the last ``Acquire=1``).
"""

from __future__ import annotations

import functools

from caproto import ChannelData

from .. import ca
from ..world import TICKS_PER_SECOND
from .config import DetectorConfig
from .frames import STAMP_PIXELS
from .records import (
    COLOR_MODES,
    DATA_TYPE,
    DATA_TYPES,
    DETECTOR_STATES,
    MAX_SIZE,
    MAX_XML,
    Check,
    Records,
    boolean,
    check_attributes,
    enum,
    long_string,
    non_negative,
    refuse,
)
from .timing import Timing, TriggerMode

__all__ = ["Cam"]


class Cam:
    """The cam's records, added to ``pvs`` under ``prefix`` (e.g. ``SIM:DET:cam1:``).

    Args:
        prefix: the cam's PV prefix.
        pvs: the CA server's database the records are added to.
        config: the detector's build-time settings (size, readout, cable).
        on_acquire: put hook of ``Acquire``.
        on_trigger_source: put hook of ``TriggerSource``.
    """

    #: The asyn port name plugins select in ``NDArrayPort``.
    port = "DET.CAM"

    def __init__(
        self,
        prefix: str,
        pvs: dict[str, ChannelData],
        config: DetectorConfig,
        *,
        on_acquire: Check,
        on_trigger_source: Check,
    ) -> None:
        self.prefix = prefix
        r = Records(prefix, pvs)
        s, i, d = ca.string, ca.integer, ca.double
        seconds = functools.partial(d, precision=6, units="s")
        r.ro("PortName_RBV", s, self.port)
        r.ro("Manufacturer_RBV", s, "panda-flyscan")
        r.ro("Model_RBV", s, "Simulated area detector")
        r.ro("SerialNumber_RBV", s, "SIM-0001")
        r.ro("SDKVersion_RBV", s, "sim")
        r.ro("FirmwareVersion_RBV", s, "sim")
        r.ro("ADCoreVersion_RBV", s, "3.12.1")
        r.ro("DriverVersion_RBV", s, "panda-flyscan sim")
        self.unique_id = r.ro("UniqueId_RBV", i, 0)
        self.attributes = r.param(
            "NDAttributesFile", long_string(MAX_XML), "", check_attributes, rbv=""
        )
        r.ro("MaxSizeX_RBV", i, MAX_SIZE)
        r.ro("MaxSizeY_RBV", i, MAX_SIZE)
        self.size_x = r.param("SizeX", i, config.width, self._check_size)
        self.size_y = r.param("SizeY", i, config.height, self._check_size)
        self.array_size = [
            r.ro("ArraySizeX_RBV", i, config.width),
            r.ro("ArraySizeY_RBV", i, config.height),
            r.ro("ArraySizeZ_RBV", i, 0),
        ]
        self.array_size_n = [
            r.ro("ArraySize0_RBV", i, config.width),
            r.ro("ArraySize1_RBV", i, config.height),
            r.ro("ArraySize2_RBV", i, 0),
        ]
        r.ro("DataType_RBV", enum(DATA_TYPES), DATA_TYPE)
        r.ro("ColorMode_RBV", enum(COLOR_MODES), "Mono")
        self.array_counter = r.param("ArrayCounter", i, 0)
        self.array_callbacks = r.param(
            "ArrayCallbacks", boolean(("Disable", "Enable")), True
        )
        self.acquire_time = r.param("AcquireTime", seconds, 0.01, non_negative)
        self.acquire_period = r.param("AcquirePeriod", seconds, 0.0, non_negative)
        self.num_images = r.param("NumImages", i, 1, self._check_num_images)
        self.image_mode = r.param(
            "ImageMode", enum(("Single", "Multiple", "Continuous")), "Multiple"
        )
        self.num_images_counter = r.ro("NumImagesCounter_RBV", i, 0)
        self.acquire = r.param(
            "Acquire", boolean(("Done", "Acquire")), False, on_acquire
        )
        self.state = r.ro("DetectorState_RBV", enum(DETECTOR_STATES), "Idle")
        self.status = r.ro("StatusMessage_RBV", long_string(), "Idle")
        r.param("WaitForPlugins", boolean(("No", "Yes")), False, rbv="")
        self.trigger_mode = r.param(
            "TriggerMode", enum(tuple(m.value for m in TriggerMode)), "Internal"
        )
        # ADKinetix's readout port: served so KinetixDetector connects; inert.
        r.param("ReadoutPortIdx", enum(("1", "2", "3", "4")), "1")
        self.trigger_source = r.param(
            "TriggerSource",
            enum(tuple(f"TTLOUT{n}" for n in range(1, 11))),
            f"TTLOUT{config.ttlout}",
            on_trigger_source,
        )
        self.readout_time = r.ro("ReadoutTime_RBV", seconds, config.readout_time)
        self.dropped = r.ro("DroppedTriggers_RBV", i, 0)

    async def _check_size(self, value: int) -> int:
        # Clamped as ADSimDetector does; the stamp needs its pixels.
        return min(max(int(value), STAMP_PIXELS), MAX_SIZE)

    async def _check_num_images(self, value: int) -> None:
        if value < 1:
            refuse("NumImages must be at least 1")

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the frames it takes now."""
        return int(self.size_y.value), int(self.size_x.value)

    def timing(self) -> Timing:
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
