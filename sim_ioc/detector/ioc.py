"""The simulated area detector over Channel Access: a cam and an HDF5 plugin.

PV names and types follow ADCore (``ADBase.template``, ``NDPluginBase``,
``NDFile``, ``NDFileHDF5``), so ophyd-async's stock areaDetector classes connect
unchanged: ``SimDetector`` (internal triggering) and ``KinetixDetector``
(internal, external edge, external gate: its ``TriggerMode`` labels are the
ones served here). :class:`SimAreaDetector` only composes the parts:

* :mod:`.acquisition_loop`: the cam (:mod:`.cam`'s records), its acquisitions
  on the PandA's clock and the loop publishing frames;
* :mod:`.file_capture`: the HDF5 plugin (:mod:`.hdf_plugin`'s records) and the
  file it writes;
* the NDAttributes both attach to each frame.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from caproto import ChannelData

from .. import ca
from ..panda.server import PandaServer
from .acquisition_loop import AcquisitionLoop
from .attributes import AttributeDef, AttributesError, parse_attributes
from .cam import Cam
from .config import DetectorConfig
from .file_capture import FileCapture
from .hdf5 import Frame
from .hdf_plugin import HDFPlugin
from .records import Param
from .ttl import TtlinOutput

__all__ = ["DetectorConfig", "SimAreaDetector"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _parsed(text: str) -> tuple[AttributeDef, ...]:
    """``parse_attributes``, once per distinct NDAttributesFile value."""
    return tuple(parse_attributes(text))


class SimAreaDetector:
    """A cam (``<prefix>cam1:``) and an HDF5 plugin (``<prefix>HDF1:``).

    :attr:`pvs` is its part of the CA server's database; :meth:`run` publishes
    frames and must run while it is served.

    Args:
        server: the simulated PandA whose clock, world and TTL outputs it
            shares.
        prefix: PV prefix, e.g. ``SIM:DET:``.
        position_at: the x motor's user position at a tick (what the sample
            under the beam is seen at).
        config: build-time settings.
        local_pv: looks up PVs served by this process, for NDAttributes of
            type EPICS_PV (others read 0, as ADCore's for an unconnected PV).
        y_position_at: the y motor's user position at a tick (None: the
            sample is seen at y = 0).
    """

    def __init__(
        self,
        server: PandaServer,
        prefix: str,
        position_at: Callable[[int], float],
        config: DetectorConfig | None = None,
        local_pv: Callable[[str], ChannelData | None] | None = None,
        y_position_at: Callable[[int], float] | None = None,
    ) -> None:
        self.server = server
        self.prefix = prefix
        self.config = config = config or DetectorConfig()
        self.pvs: dict[str, ChannelData] = {}
        self.acquisition = AcquisitionLoop(
            server,
            prefix + "cam1:",
            self.pvs,
            position_at,
            config,
            local_pv or (lambda name: None),
            self._attribute_defs,
            self._to_plugins,
            y_position_at,
        )
        self.cam: Cam = self.acquisition.cam
        self.capture = FileCapture(
            prefix + "HDF1:",
            self.pvs,
            Cam.port,
            lambda: self.cam.frame_shape,
            self._attribute_defs,
        )
        self.hdf: HDFPlugin = self.capture.plugin

    # The cam parameters tests and tools drive in process.

    @property
    def trigger_mode(self) -> Param:
        """The cam's ``TriggerMode``."""
        return self.cam.trigger_mode

    @property
    def acquire_time(self) -> Param:
        """The cam's ``AcquireTime``."""
        return self.cam.acquire_time

    @property
    def num_images(self) -> Param:
        """The cam's ``NumImages``."""
        return self.cam.num_images

    @property
    def image_mode(self) -> Param:
        """The cam's ``ImageMode``."""
        return self.cam.image_mode

    @property
    def acquire(self) -> Param:
        """The cam's ``Acquire``."""
        return self.cam.acquire

    @property
    def dropped(self) -> ca.Hooked:
        """The cam's ``DroppedTriggers_RBV``."""
        return self.cam.dropped

    @property
    def exposure_output(self) -> TtlinOutput | None:
        """The exposure output on a PandA TTLIN, if cabled."""
        return self.acquisition.exposure_output

    async def _put_acquire(self, value: Any) -> Any:
        """The ``Acquire`` put hook (what a client's put runs)."""
        return await self.acquisition.put_acquire(value)

    def _attribute_defs(self) -> list[AttributeDef]:
        """The NDAttributes the cam and the plugin attach to each frame now
        (checked when written; a file that has gone since counts as none)."""
        defs: list[AttributeDef] = []
        for param in (self.cam.attributes, self.hdf.attributes):
            try:
                defs.extend(_parsed(str(param.value)))
            except AttributesError as exc:
                log.warning("%s: NDAttributes ignored: %s", self.prefix, exc)
        return defs

    async def _to_plugins(self, frames: list[Frame]) -> None:
        await self.capture.receive(frames)

    async def run(self) -> None:
        """Turn exposures into frames as their readout ends, until cancelled."""
        try:
            await self.acquisition.run()
        finally:
            self.capture.close()
