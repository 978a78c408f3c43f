"""areaDetector parameter PVs: the building blocks of the cam and the plugin.

An ADCore parameter is a pair of PVs, ``NAME`` to write and ``NAME_RBV`` to
read back (:class:`Param`); :class:`Records` builds them under a plugin's
prefix into the CA server's database. The label tuples are those ophyd-async's
enums expect; the put checks shared by the cam and the plugin are here too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from caproto import ChannelData

from .. import ca
from .attributes import AttributesError, parse_attributes

__all__ = [
    "COLOR_MODES",
    "COMPRESSIONS",
    "DATA_TYPE",
    "DATA_TYPES",
    "DETECTOR_STATES",
    "DTYPE",
    "MAX_SIZE",
    "MAX_XML",
    "ChannelMaker",
    "Check",
    "Param",
    "Records",
    "boolean",
    "check_attributes",
    "enum",
    "is_on",
    "long_string",
    "non_negative",
    "refuse",
]

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


class Param:
    """An areaDetector parameter: ``NAME`` to write, ``NAME_RBV`` to read."""

    def __init__(self, setpoint: ca.Hooked | None, readback: ca.Hooked) -> None:
        self.setpoint = setpoint
        self.readback = readback

    @property
    def value(self) -> Any:
        """The readback's value."""
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


def boolean(labels: tuple[str, str]) -> ChannelMaker:
    """Two-state channels labelled ``labels`` (off, on)."""

    def make(value: Any, **kw: Any) -> ca.Hooked:
        return ca.boolean(value in (True, 1, labels[1]), labels, **kw)

    return make


def enum(choices: tuple[str, ...]) -> ChannelMaker:
    """Enum channels of ``choices``."""
    return functools.partial(ca.enum, choices)


def long_string(max_length: int = 256) -> ChannelMaker:
    """Long-string (char waveform) channels of up to ``max_length`` bytes."""
    return functools.partial(ca.long_string, max_length=max_length)


class Records:
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


def is_on(value: Any) -> bool:
    """A two-state PV's value (its label, after caproto's conversion) is 1."""
    return value in (1, True, "Acquire", "Capture", "Flush", "Enable", "Yes", "On")


def refuse(message: str) -> None:
    """Refuse a client's put, saying why."""
    raise ca.PutRefused(message)


async def non_negative(value: float) -> None:
    """Check: refuse a negative value."""
    if value < 0:
        refuse("must not be negative")


async def check_attributes(value: str) -> None:
    """Check for ``NDAttributesFile``: refuse definitions that do not parse."""
    try:
        parse_attributes(value)
    except AttributesError as exc:
        refuse(str(exc))
