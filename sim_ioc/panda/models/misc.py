"""Small models of the PandA's housekeeping and interface blocks.

OUTENC (encoder output), SYSTEM (board sensors and clock selection) and the
SFP3 PandA synchroniser (SFP3_SYNC_IN/OUT). None has upstream timing vectors;
each models what a client can observe, no more. The FMC card's blocks are in
:mod:`.fmc`.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import register
from .base import Block, Bus, TableMemory, to_int32

# -- OUTENC ------------------------------------------------------------------------

# PROTOCOL codes.
QUADRATURE, SSI, BISS, ENDAT, ABZ_PASSTHROUGH, DATA_PASSTHROUGH = range(6)
# QSTATE codes.
Q_DISABLED, Q_AT_POSITION, Q_SLEWING = range(3)
#: OUTENC HEALTH code for the unimplemented EnDat protocol.
HEALTH_ENDAT_NOT_IMPLEMENTED = 2
#: DCARD_TYPE code of an encoder control daughter card (what a PandABox with
#: output-capable encoder cards reports).
DCARD_ENCODER_CONTROL = 1

#: Quadrature (A, B) levels for the tracked count modulo 4: A leads B when
#: counting up.
_QUADRATURE = ((0, 0), (1, 0), (1, 1), (0, 1))


@register
class Outenc(Block):
    """Encoder output: drives the connector from the bus.

    Protocols (``PROTOCOL``): in ABZ passthrough (4) the connector's A, B and
    Z copy the ``A``, ``B`` and ``Z`` inputs; in DATA passthrough (5) its data
    line copies ``DATA``. In quadrature (0) the block emulates an incremental
    encoder following the position ``VAL``: a rising edge of ``ENABLE``
    takes ``VAL`` as the current count without emitting edges; while enabled,
    a tracked count steps by one towards ``VAL`` every ``QPERIOD`` ticks (at
    least 1), its quadrature code giving A and B, and ``QSTATE`` reads 2
    (slewing) until it arrives, then 1 (at position); 0 while disabled. The
    serial protocols (SSI, BiSS) answer a master's clock, which the
    simulation does not provide: their data line idles low; EnDat reads
    ``HEALTH`` = 2 (not implemented, as in the firmware).

    The connector is not on the system buses: the world reads it with
    :meth:`connector`. ``CLK`` (a master encoder's clock) stays low and
    ``DCARD_TYPE`` reads "Encoder Control".

    Not modelled: the phase of the firmware's free-running ``QPERIOD``
    prescaler (steps here are counted from the tick tracking started), and
    the daughter card's monitor mode.

    Event driven: the block is woken once, when the tracked count reaches
    ``VAL``, not on every step.
    """

    NAME = "OUTENC"
    INPUTS = (
        "ENABLE",
        "GENERATOR_ERROR",
        "A",
        "B",
        "Z",
        "DATA",
        "PROTOCOL",
        "ENCODING",
        "BITS",
        "QPERIOD",
        "VAL",
    )
    OUTPUTS = ("CLK", "HEALTH", "DCARD_TYPE", "QSTATE")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self.values["DCARD_TYPE"] = DCARD_ENCODER_CONTROL
        #: The tracked count was ``_count`` on tick ``_since``.
        self._count = 0
        self._since = 0

    def _period(self) -> int:
        return max(self.values["QPERIOD"] & 0xFFFFFFFF, 1)

    def count(self, ts: int) -> int:
        """The quadrature count emitted by tick ``ts`` (frozen while disabled)."""
        if not self.values["ENABLE"] & 1:
            return self._count
        target = to_int32(self.values["VAL"])
        steps = max(ts - self._since, 0) // self._period()
        gap = target - self._count
        return (
            target
            if abs(gap) <= steps
            else self._count + (steps if gap > 0 else -steps)
        )

    def connector(self, ts: int) -> tuple[int, int, int, int]:
        """The (A, B, Z, DATA) levels on the output connector at tick ``ts``."""
        v = self.values
        protocol = v["PROTOCOL"] & 7
        if protocol == ABZ_PASSTHROUGH:
            a, b, z = v["A"] & 1, v["B"] & 1, v["Z"] & 1
        else:
            a, b = _QUADRATURE[self.count(ts) & 3]
            z = 0
        data = v["DATA"] & 1 if protocol == DATA_PASSTHROUGH else 0
        return a, b, z, data

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        # Where tracking had got to under the old inputs.
        count = self.count(ts)
        previous = self.apply_inputs(changes)
        v = self.values
        enable = v["ENABLE"] & 1
        if enable and "ENABLE" in previous:
            # Rising edge: jump to the position without emitting edges.
            count = to_int32(v["VAL"])
        if previous.keys() & {"ENABLE", "VAL", "QPERIOD"}:
            self._count, self._since = count, ts
        self.set_output(
            "HEALTH",
            HEALTH_ENDAT_NOT_IMPLEMENTED if v["PROTOCOL"] & 7 == ENDAT else 0,
        )
        if not enable:
            self.set_output("QSTATE", Q_DISABLED)
            return None
        count = self.count(ts)
        target = to_int32(v["VAL"])
        if count == target:
            self.set_output("QSTATE", Q_AT_POSITION)
            return None
        self.set_output("QSTATE", Q_SLEWING)
        # The tick the last step lands.
        return self._since + abs(target - self._count) * self._period()


# -- SYSTEM ------------------------------------------------------------------------

#: Board temperatures (``read int`` registers, degrees Celsius).
TEMPERATURES = {
    "TEMP_PSU": 38,
    "TEMP_SFP": 41,
    "TEMP_ENC_L": 35,
    "TEMP_PICO": 46,
    "TEMP_ENC_R": 36,
}

#: ``read scalar`` sensors: (reading shown, SCALE of the register). The raw
#: register holds ``round(reading / SCALE)``, so the server's scaling gives
#: back the reading. The SCALEs are the firmware's (system.block.ini).
SENSORS = {
    # Zynq die temperature in millidegrees and core voltage in millivolts.
    "TEMP_ZYNQ": (52.3, 0.001),
    "VCCINT": (1.0, 0.001),
    "ALIM_12V0": (12.0, 0.001486252),
    "PICO_5V0": (5.0, 0.000611546),
    "IO_5V0": (5.0, 0.000609385),
    "SFP_3V3": (3.3, 0.000384078),
    # The -15 V rail's monitor reports its magnitude.
    "FMC_15VN": (15.0, 0.003533569),
    "FMC_15VP": (15.0, 0.001847291),
    "ENC_24V": (24.0, 0.002854764),
    "FMC_12V": (12.0, 0.001494582),
}

# CLOCK_SOURCE codes.
INTERNAL_CLOCK = 0
#: SYSTEM HEALTH code when the selected clock is not available.
CLOCK_SELECT_ERROR = 1


def sensor_raw(reading: float, scale: float) -> int:
    """The raw register value a sensor shows ``reading`` with."""
    return round(reading / scale)


@register
class System(Block):
    """Board housekeeping: constant sensor readings and the clock selection.

    Temperatures and voltages are the constant, plausible figures of
    :data:`TEMPERATURES` and :data:`SENSORS`. The simulation has no external
    clock: ``CLK_SEL_STAT`` always reads the internal clock, ``PLL_LOCKED``
    and ``EXT_CLOCK_FREQ`` read 0, and selecting another ``CLOCK_SOURCE``
    gives ``HEALTH`` = 1 (clock select error) until the internal clock is
    selected again. ``TIMESTAMP_SOURCE`` is stored and has no effect.
    """

    NAME = "SYSTEM"
    INPUTS = ("CLOCK_SOURCE", "TIMESTAMP_SOURCE")
    OUTPUTS = (
        *TEMPERATURES,
        *SENSORS,
        "PLL_LOCKED",
        "EXT_CLOCK_FREQ",
        "CLK_SEL_STAT",
        "HEALTH",
    )

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self.values.update(TEMPERATURES)
        for name, (reading, scale) in SENSORS.items():
            self.values[name] = sensor_raw(reading, scale)

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        internal = self.values["CLOCK_SOURCE"] & 3 == INTERNAL_CLOCK
        self.set_output("HEALTH", 0 if internal else CLOCK_SELECT_ERROR)
        return None


# -- SFP3_SYNC ---------------------------------------------------------------------

#: SFP3_SYNC_IN HEALTH code: the link is down.
LINK_DOWN = 1
_SYNC_BITS = tuple(f"BIT{n}" for n in range(1, 9))
_SYNC_POS = tuple(f"POS{n}" for n in range(1, 5))


@register
class Sfp3SyncIn(Block):
    """Receiving side of the PandA synchroniser on SFP3: no link, ever.

    The simulation has no second PandA at the other end of the fibre:
    ``LINKUP`` reads 0, ``HEALTH`` reads 1 (link down), ``ERR_CNT`` 0, and the
    received bits and positions stay at their reset value 0. ``SYNC_RESET``
    is accepted and changes nothing.
    """

    NAME = "SFP3_SYNC_IN"
    INPUTS = ("SYNC_RESET",)
    OUTPUTS = (*_SYNC_BITS, *_SYNC_POS, "LINKUP", "HEALTH", "ERR_CNT")

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        super().__init__(bus, memory)
        self.values["HEALTH"] = LINK_DOWN

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        return None


@register
class Sfp3SyncOut(Block):
    """Sending side of the PandA synchroniser on SFP3: holds its inputs.

    The bits and positions it would transmit are kept in :attr:`values` for
    whoever wants to observe them; nothing leaves the simulated box.
    """

    NAME = "SFP3_SYNC_OUT"
    INPUTS = (*_SYNC_BITS, *_SYNC_POS, "MGT_RESET")

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        self.changes = {}
        self.apply_inputs(changes)
        return None
