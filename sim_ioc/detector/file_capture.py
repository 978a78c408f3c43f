"""The HDF5 plugin's file capture: frames from the cam into an HDF5 file.

Stream mode only, in ADCore's default layout (:mod:`.hdf5`): ``Capture=1``
checks the path and opens the file (or, with ``LazyOpen``, leaves that to the
first frame), frames are appended as the cam publishes them, and the capture
ends at ``NumCapture`` frames, on ``Capture=0`` or on a write error. The
plugin's records are :mod:`.hdf_plugin`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caproto import ChannelData

from .. import ca
from .attributes import AttributeDef, AttributesError
from .hdf5 import AttributeSpec, Frame, HDF5Writer
from .hdf_plugin import HDFPlugin
from .records import DTYPE, is_on

__all__ = ["FileCapture"]

log = logging.getLogger(__name__)


class FileCapture:
    """The plugin (:attr:`plugin`, its records) and the file it writes.

    Args:
        prefix: the plugin's PV prefix, e.g. ``SIM:DET:HDF1:``.
        pvs: the CA server's database its records are added to.
        cam_port: the port of the cam whose frames it takes.
        frame_shape: (height, width) of the cam's frames now.
        attribute_defs: the NDAttributes each frame carries now.
    """

    def __init__(
        self,
        prefix: str,
        pvs: dict[str, ChannelData],
        cam_port: str,
        frame_shape: Callable[[], tuple[int, int]],
        attribute_defs: Callable[[], list[AttributeDef]],
    ) -> None:
        self.plugin = HDFPlugin(
            prefix,
            pvs,
            cam_port,
            on_capture=self._put_capture,
            on_flush=self._put_flush,
        )
        self.cam_port = cam_port
        self.frame_shape = frame_shape
        self.attribute_defs = attribute_defs
        self._writer: HDF5Writer | None = None
        self._capture_done: asyncio.Future[None] | None = None

    async def _open(self) -> HDF5Writer:
        """Open the capture's file (ValueError/OSError saying why not)."""
        p = self.plugin
        await p.check_file_path()
        compression = {"None": None, "zlib": "gzip"}.get(p.compression.value, "")
        if compression == "":
            raise ValueError(f"Compression {p.compression.value} is not simulated")
        defs = self.attribute_defs()
        chunk = int(p.frames_per_chunk.value)
        if chunk == 0:
            chunk = 1
            await p.frames_per_chunk.set(chunk)
        name = p.full_file_name_now()
        writer = HDF5Writer(
            Path(name),
            self.frame_shape(),
            DTYPE,
            chunk_frames=chunk,
            attributes=[AttributeSpec(a.name, a.dtype) for a in defs],
            swmr=p.swmr.value == "On",
            compression=compression,
        )
        await p.full_file_name.post(name)
        await p.ok()
        log.info("%s: writing %s", p.name, name)
        return writer

    async def _put_capture(self, value: Any) -> Any:
        p = self.plugin
        if not is_on(value):
            await self._stop()
            return None
        if self._capture_done is not None:
            return ca.Deferred("Capture", asyncio.shield(self._capture_done))
        unsupported = {
            f"FileWriteMode {p.write_mode.value}": p.write_mode.value != "Stream",
            "an XMLFileName layout": bool(p.xml_layout.value),
            "NumExtraDims > 0": int(p.extra_dims.value) != 0,
        }
        for what, wanted in unsupported.items():
            if wanted:
                message = f"{what} is not simulated (Stream, default layout only)"
                await p.error(message)
                raise ca.PutRefused(message)
        await p.num_captured.post(0)
        try:
            # Checked now even with LazyOpen (where ADCore would only fail at
            # the first frame), so a bad path fails before a scan starts.
            await p.check_file_path()
            p.full_file_name_now()
            if p.lazy_open.value != "Yes":
                self._writer = await self._open()
        except (ValueError, OSError, AttributesError) as exc:
            await p.error(f"cannot capture: {exc}")
            raise ca.PutRefused(str(exc)) from None
        self._capture_done = asyncio.get_running_loop().create_future()
        await p.capture.readback.post("Capture")
        return ca.Deferred("Capture", asyncio.shield(self._capture_done))

    async def _stop(self) -> None:
        p = self.plugin
        done, self._capture_done = self._capture_done, None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if p.auto_increment.value == "Yes":
                await p.file_number.set(int(p.file_number.value) + 1)
        await p.capture.set("Done")
        if done is not None and not done.done():
            done.set_result(None)

    async def _put_flush(self, value: Any) -> None:
        if is_on(value) and self._writer is not None:
            self._writer.flush()

    async def receive(self, frames: list[Frame]) -> None:
        """The plugin's callback: frames arrive from the cam."""
        p = self.plugin
        if (
            p.enable_callbacks.value != "Enable"
            or p.nd_array_port.value != self.cam_port
        ):
            return
        height, width = frames[-1].image.shape
        sizes = {"X": width, "Y": height, "Z": 0, "0": width, "1": height, "2": 0}
        for name, pv in p.sizes.items():
            await pv.post(sizes[name.removesuffix("_RBV")[-1]])
        await p.array_counter.set(int(p.array_counter.value) + len(frames))
        await p.unique_id.post(frames[-1].unique_id)
        if self._capture_done is None:
            return
        limit = int(p.num_capture.value)
        if limit:
            frames = frames[: max(0, limit - int(p.num_captured.value))]
        try:
            if self._writer is None:
                self._writer = await self._open()
            self._writer.write(frames)
        except (ValueError, OSError, AttributesError) as exc:
            await p.error(f"cannot write: {exc}")
            await self._stop()
            return
        await p.num_captured.post(self._writer.frames)
        if limit and self._writer.frames >= limit:
            await self._stop()

    def close(self) -> None:
        """Close the file being written, if any (the IOC is stopping)."""
        if self._writer is not None:
            self._writer.close()
