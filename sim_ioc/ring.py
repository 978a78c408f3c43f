"""The storage ring's beam current over Channel Access, for suspenders.

Two PVs, named after ``<prefix>:RING:``:

* ``CURRENT``: the beam current, mA (``EGU`` mA, ``PREC`` 1), at
  :attr:`sim_ioc.config.SimulatorConfig.ring_current` from start-up. It
  stays there (no decay, no injection) until a client writes it: a put sets
  it at once and posts a monitor, so a test trips a bluesky suspender
  (``SuspendFloor``) by putting 0 and restores the beam by putting it back.
  A negative current is refused.
* ``DUMP``: a bo (``No``/``Yes``): writing 1 dumps the beam (``CURRENT`` to
  0), writing 0 refills it (``CURRENT`` back to the configured current).
"""

from __future__ import annotations

from typing import Any

from caproto import ChannelData

from . import ca

__all__ = ["StorageRing"]


class StorageRing:
    """The ring's ``CURRENT`` and ``DUMP`` PVs; :attr:`pvs` is their part of
    the CA server's database.

    Args:
        prefix: the beamline's record prefix, e.g. ``SIM`` (PVs
            ``SIM:RING:CURRENT``, ``SIM:RING:DUMP``).
        current: the current at start-up and after a refill, mA (>= 0).
    """

    def __init__(self, prefix: str, current: float) -> None:
        if current < 0:
            raise ValueError(f"ring current {current} mA is negative")
        self.configured = float(current)
        self.current = ca.double(
            self.configured, precision=1, units="mA", on_put=self._put_current
        )
        self.dump = ca.boolean(False, on_put=self._put_dump)
        self.pvs: dict[str, ChannelData] = {
            f"{prefix}:RING:CURRENT": self.current,
            f"{prefix}:RING:DUMP": self.dump,
        }

    async def _put_current(self, value: float) -> None:
        if value < 0:
            raise ca.PutRefused(f"ring current {value} mA is negative")

    async def _put_dump(self, value: Any) -> None:
        dumped = value in (True, 1, self.dump.enum_strings[1])
        await self.current.post(0.0 if dumped else self.configured)
