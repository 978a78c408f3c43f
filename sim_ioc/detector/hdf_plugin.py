"""The HDF5 plugin's PVs (``<prefix>HDF1:``), as ADCore's ``NDPluginBase``,
``NDFile`` and ``NDFileHDF5`` templates name them.

The records, the checks of ``FilePath`` (existence, ``CreateDirectory``,
writability), the file name the template makes and the write status. Writing
files (``Capture``, ``FlushNow``) is :mod:`.file_capture`'s, handed in as put
hooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from caproto import ChannelData

from .. import ca
from .records import (
    COLOR_MODES,
    COMPRESSIONS,
    DATA_TYPE,
    DATA_TYPES,
    MAX_XML,
    Check,
    Records,
    boolean,
    check_attributes,
    enum,
    long_string,
    non_negative,
)

__all__ = ["HDFPlugin", "create_dirs"]

log = logging.getLogger(__name__)


def create_dirs(path: Path, depth: int) -> None:
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


class HDFPlugin:
    """The plugin's records, added to ``pvs`` under ``prefix`` (e.g.
    ``SIM:DET:HDF1:``).

    Args:
        prefix: the plugin's PV prefix.
        pvs: the CA server's database the records are added to.
        cam_port: the cam's asyn port (``NDArrayPort``'s initial value).
        on_capture: put hook of ``Capture``.
        on_flush: put hook of ``FlushNow``.
    """

    #: Its asyn port name.
    port = "DET.HDF1"

    def __init__(
        self,
        prefix: str,
        pvs: dict[str, ChannelData],
        cam_port: str,
        *,
        on_capture: Check,
        on_flush: Check,
    ) -> None:
        #: The name it logs under (the prefix without its last colon).
        self.name = prefix.removesuffix(":")
        r = Records(prefix, pvs)
        s, i = ca.string, ca.integer
        yes_no = boolean(("No", "Yes"))
        r.ro("PortName_RBV", s, self.port)
        r.ro("ADCoreVersion_RBV", s, "3.12.1")
        r.ro("DriverVersion_RBV", s, "3.12.1")
        r.ro("PluginType_RBV", s, "NDFileHDF5")
        self.unique_id = r.ro("UniqueId_RBV", i, 0)
        self.attributes = r.param(
            "NDAttributesFile", long_string(MAX_XML), "", check_attributes, rbv=""
        )
        self.sizes = {
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
        r.ro("DataType_RBV", enum(DATA_TYPES), DATA_TYPE)
        r.ro("ColorMode_RBV", enum(COLOR_MODES), "Mono")
        self.array_counter = r.param("ArrayCounter", i, 0)
        self.nd_array_port = r.param("NDArrayPort", s, cam_port)
        self.enable_callbacks = r.param(
            "EnableCallbacks", boolean(("Disable", "Enable")), False
        )
        r.param("NDArrayAddress", i, 0)
        r.param("QueueSize", i, 20)
        self.file_path = r.param("FilePath", long_string(), "", self._put_file_path)
        self.file_name = r.param("FileName", long_string(), "")
        self.path_exists = r.ro("FilePathExists_RBV", yes_no, False)
        self.file_template = r.param("FileTemplate", long_string(), "%s%s_%6.6d.h5")
        self.full_file_name = r.ro("FullFileName_RBV", long_string(), "")
        self.file_number = r.param("FileNumber", i, 0)
        self.auto_increment = r.param("AutoIncrement", yes_no, False)
        self.write_mode = r.param(
            "FileWriteMode", enum(("Single", "Capture", "Stream")), "Single"
        )
        self.num_capture = r.param("NumCapture", i, 1, non_negative)
        self.num_captured = r.ro("NumCaptured_RBV", i, 0)
        self.capture = r.param(
            "Capture", boolean(("Done", "Capture")), False, on_capture
        )
        self.create_directory = r.param("CreateDirectory", i, 0)
        self.write_status = r.ro("WriteStatus", enum(("Write OK", "Write error")), "")
        self.write_message = r.ro("WriteMessage", long_string(), "")
        r.param("PositionMode", boolean(("Off", "On")), False)
        self.compression = r.param("Compression", enum(COMPRESSIONS), "None")
        self.extra_dims = r.param("NumExtraDims", i, 0)
        self.swmr = r.param("SWMRMode", boolean(("Off", "On")), False)
        r.param("FlushNow", boolean(("Done", "Flush")), False, on_flush, rbv="")
        self.xml_layout = r.param("XMLFileName", long_string(), "")
        self.frames_per_chunk = r.param("NumFramesChunks", i, 0, non_negative)
        r.param("ChunkSizeAuto", yes_no, False)
        self.lazy_open = r.param("LazyOpen", yes_no, False)

    # -- write status -----------------------------------------------------------

    async def error(self, message: str) -> None:
        """Report a write error (``WriteStatus``, ``WriteMessage``, the log)."""
        log.warning("%s: %s", self.name, message)
        await self.write_status.post("Write error")
        await self.write_message.post(message)

    async def ok(self) -> None:
        """Clear the write status."""
        await self.write_status.post("Write OK")
        await self.write_message.post("")

    # -- the file path and name ---------------------------------------------------

    async def check_path(self, text: str) -> str | None:
        """Whether the directory exists and files can be created in it
        (FilePathExists_RBV); returns the problem, if any."""
        if not text:
            return "FilePath is empty"
        path = Path(text)
        create_dirs(path, int(self.create_directory.value))
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

    async def check_file_path(self) -> None:
        """Check ``FilePath`` now, posting FilePathExists_RBV; ValueError
        saying what is wrong with it."""
        problem = await self.check_path(str(self.file_path.value))
        await self.path_exists.post(problem is None)
        if problem is not None:
            raise ValueError(problem)

    async def _put_file_path(self, value: str) -> str:
        # As ADCore: the path gets a trailing separator, and its existence
        # is checked (and reported) on every write.
        if value and not value.endswith("/"):
            value += "/"
        problem = await self.check_path(value)
        await self.path_exists.post(problem is None)
        if problem is None:
            await self.ok()
        else:
            await self.error(problem)
        return value

    def full_file_name_now(self) -> str:
        """The file name ``FileTemplate`` makes of the path, name and number
        (ValueError for a template that does not fit)."""
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
