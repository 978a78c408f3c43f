"""The contract every pure block model follows.

A model is a tick-exact description of one instance of a firmware block. It
knows nothing about sockets, wall clocks or the protocol: time is an integer
count of 125 MHz FPGA ticks (8 ns), and fields are the firmware's *register*
names (``DELAY_L``/``DELAY_H`` rather than ``DELAY``; ``TABLE_ADDRESS`` and
``TABLE_LENGTH`` rather than the table the server receives). The protocol
layer converts user-facing values into registers.

The simulation calls :meth:`Block.on_changes` with the tick and whatever
inputs or parameters changed on that tick (possibly none, when the block asked
to be woken). The block updates its outputs, recording each output that
changed in :attr:`Block.changes`, and returns the next tick at which it needs
to be woken without any input change, or ``None``. This makes the simulation
event driven: nothing is stepped tick by tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

#: Number of entries on the system buses, as in the firmware.
BIT_BUS_SIZE = 128
POS_BUS_SIZE = 32

#: Reads the words of a table the server has placed in DMA memory.
TableMemory = Callable[[int, int], Sequence[int]]


def to_int32(value: int) -> int:
    """Wrap an integer to a signed 32-bit value, as a 32-bit register holds it."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def to_uint32(value: int) -> int:
    """Wrap an integer to an unsigned 32-bit value."""
    return value & 0xFFFFFFFF


@dataclass
class Bus:
    """The system bit and position buses, shared by the blocks that read them whole.

    Most blocks see the bus through their ``bit_mux``/``pos_mux`` inputs, which
    arrive as named changes. PCAP captures arbitrary bus entries, so it reads
    this object directly; whoever updates an entry also passes ``"POS[n]"`` /
    ``"BIT[n]"`` in the changes so PCAP can integrate (Sum, Mean, ...).
    """

    bits: list[int] = field(default_factory=lambda: [0] * BIT_BUS_SIZE)
    pos: list[int] = field(default_factory=lambda: [0] * POS_BUS_SIZE)


#: A run of values one input or bus entry takes: (ticks, values), two int64
#: arrays of the same length, ticks increasing.
Train = tuple[np.ndarray, np.ndarray]


@dataclass
class BusTimeline:
    """The bus entries that change during a train: index -> (ticks, values),
    the tick being the one on which the bus shows the value."""

    bits: dict[int, Train]
    pos: dict[int, Train]


class Block:
    """Base class of the pure block models.

    Subclasses list their register names in the class variables below, set
    defaults in ``__init__`` and implement :meth:`on_changes`.
    """

    #: Block name as the firmware knows it, e.g. ``"PULSE"``.
    NAME: ClassVar[str]
    #: Registers written by the server or driven by the buses (inputs and params).
    INPUTS: ClassVar[tuple[str, ...]] = ()
    #: Values the block drives: bit/pos outputs and read-only status registers.
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, bus: Bus | None = None, memory: TableMemory | None = None):
        self.bus = bus if bus is not None else Bus()
        self.memory = memory
        #: Current value of every input and output register.
        self.values: dict[str, int] = dict.fromkeys(self.INPUTS + self.OUTPUTS, 0)
        #: Outputs that changed during the last :meth:`on_changes` call.
        self.changes: dict[str, int] = {}

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def set_output(self, name: str, value: int) -> None:
        """Drive an output, recording it in :attr:`changes` if it changed."""
        if self.values.get(name) != value:
            self.values[name] = value
            self.changes[name] = value

    def apply_inputs(self, changes: Mapping[str, int]) -> dict[str, int]:
        """Store input values; return the previous values of those that changed."""
        previous: dict[str, int] = {}
        for name, value in changes.items():
            old = self.values.get(name, 0)
            if old != value:
                previous[name] = old
            self.values[name] = value
        return previous

    def on_changes(self, ts: int, changes: Mapping[str, int]) -> int | None:
        """Process input changes on tick ``ts``; return the next tick to wake at.

        Implementations must start by clearing :attr:`changes`, must not
        return a tick ``<= ts``, and must produce identical outputs whatever
        the calls between two changes (being woken early is harmless).
        """
        raise NotImplementedError

    # -- trains (optional): bulk processing of square waves, see engine.py -------

    def square_wave(self) -> tuple[str, int, int, int] | None:
        """If, until its inputs change, output ``name`` is a square wave that
        rises on ``origin + k * period`` and falls ``high`` ticks later, and
        the block does nothing else: ``(name, origin, period, high)``."""
        return None

    def follow_wave(self, ts: int, value: int) -> None:
        """The engine played the wave of :meth:`square_wave` up to tick ``ts``
        (the last edge, where the output became ``value``): update the state
        as the calls on every edge would have."""
        raise NotImplementedError

    def plan_train(self, inputs: Mapping[str, Train]) -> tuple[int, frozenset[str]]:
        """How many leading entries of ``inputs`` (trains of the same length,
        each input changing on its own ticks and nothing else changing) the
        block can :meth:`follow_train` exactly, and which outputs may change.

        Must not change any state. A block that reads the buses whole (PCAP)
        is also asked with no inputs, for a train that only moves the buses.
        """
        return 0, frozenset()

    def follow_train(
        self, inputs: Mapping[str, Train], bus: BusTimeline
    ) -> dict[str, Train]:
        """Process ``inputs`` (as accepted by :meth:`plan_train`) as if
        :meth:`on_changes` had been called on each of their ticks (and, for a
        bus reader, on each tick of a ``bus.pos`` change), asking for no
        wake-up; return the outputs that changed, each as the ticks of the
        calls that changed it and the new values."""
        raise NotImplementedError
