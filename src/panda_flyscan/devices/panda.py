"""The PandA as an ophyd-async ``HDFPanda`` that knows its cabling and captures."""

from __future__ import annotations

from collections.abc import Sequence

from ophyd_async.core import PathProvider
from ophyd_async.fastcs.panda import HDFPanda

from .capture import Capture, check_captures
from .wiring import PandaWiring

__all__ = ["FlyscanPanda"]


class FlyscanPanda(HDFPanda):
    """``HDFPanda`` with the beamline's :class:`PandaWiring` and default captures.

    Plans take these as defaults (each plan also accepts ``wiring=`` and
    ``captures=``). ``path_provider`` should give each run its own file, e.g.
    :class:`~panda_flyscan.devices.RunFilePathProvider`.

    >>> panda = FlyscanPanda("BL01:PANDA:", RunFilePathProvider("/data/panda"),
    ...     wiring=PandaWiring(encoders=(EncoderWiring("x", inenc=1),)),
    ...     captures=[Capture("INENC1.VAL", "x"),
    ...               Capture("PCAP.TS_TRIG", "trigger_time")])
    """

    def __init__(
        self,
        prefix: str,
        path_provider: PathProvider,
        *,
        wiring: PandaWiring | None = None,
        captures: Sequence[Capture] = (),
        name: str = "",
    ) -> None:
        self.wiring = wiring or PandaWiring()
        self.captures: tuple[Capture, ...] = (
            tuple(check_captures(captures)) if captures else ()
        )
        self.path_provider = path_provider
        super().__init__(prefix, path_provider, name=name)
