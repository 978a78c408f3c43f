"""What the queue server's worker runs at start-up: the RunEngine, the
devices, the Tiled writer and the plans, in one namespace.

The profile (``profile/00-panda-flyscan.py``) is one call to
:func:`open_session` and puts :meth:`QueueSession.namespace` into the
worker's globals, where the queue server finds the RunEngine (``RE``), the
devices and the plans by name. Everything comes from
:class:`~.settings.ProfileSettings` (the worker's environment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bluesky import RunEngine
from bluesky.plan_stubs import mv
from bluesky.plans import count, scan

from ...devices import Beamline, EncoderWiring, PandaWiring, real_beamline_devices
from ...storage import DurableTiledWriter, subscribe_tiled_writer
from .plans import queue_plans
from .settings import ProfileSettings

if TYPE_CHECKING:
    from ...storage.bus import BusPublisher

__all__ = ["QueueSession", "build_beamline", "open_session"]


@dataclass(eq=False)
class QueueSession:
    """The worker's RunEngine, its devices, the writer into Tiled, the plans."""

    RE: RunEngine
    beamline: Beamline
    #: The in-process writer into Tiled, or the publisher to the bus.
    writer: DurableTiledWriter | BusPublisher
    plans: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def namespace(self) -> dict[str, Any]:
        """``RE``, every device under its name (``panda``, ``x``, ``det``...)
        and every plan: what the profile puts in the worker's globals."""
        devices = {device.name: device for device in self.beamline.devices}
        return {"RE": self.RE, **devices, **self.plans}


def build_beamline(settings: ProfileSettings) -> Beamline:
    """Connect the beamline ``settings`` describe (a RunEngine must exist).

    ``sim``: the simulated beamline's devices and cabling, as
    :func:`panda_flyscan.app.simulated.simulated_beamline_devices` builds them
    for the tests and the demo. ``real``: the PandA and the motor records
    named, each motor's encoder as ``settings.encoders`` says.
    """
    assert settings.panda_prefix is not None  # from_env requires it
    if settings.beamline == "sim":
        from ..simulated import simulated_beamline_devices

        pvs = settings.motor_pvs
        dets = settings.detector_prefixes
        return simulated_beamline_devices(
            settings.data_dir,
            panda_prefix=settings.panda_prefix,
            motor_pv=pvs.get("x"),
            motor_pv_y=pvs.get("y"),
            motor_pv_z=pvs.get("z"),
            detector_prefix=dets.get("DETECTOR_PREFIX"),
            detector2_prefix=dets.get("DETECTOR2_PREFIX"),
        )
    wiring = PandaWiring(
        encoders=tuple(
            EncoderWiring(name, inenc=settings.encoders[name])
            for name in settings.motor_pvs
            if name in settings.encoders
        )
    )
    return real_beamline_devices(
        settings.panda_prefix,
        settings.data_dir,
        motors=settings.motor_pvs,
        wiring=wiring,
        data_uri=settings.data_uri,
        panda_host=settings.panda_host,
    )


def open_session(settings: ProfileSettings | None = None) -> QueueSession:
    """The RunEngine writing into Tiled, the beamline connected, the plans.

    ``settings`` default to :meth:`ProfileSettings.from_env`. With
    ``settings.bus_url`` the documents go to the bus (a
    :class:`~panda_flyscan.storage.bus.BusPublisher`) instead. Raises, naming
    the fix, if Tiled cannot store runs or cannot read the data directory
    (:func:`~panda_flyscan.storage.subscribe_tiled_writer`), or a device does
    not connect: the queue server then reports the environment as failed to
    open, with this error in its log.
    """
    settings = settings if settings is not None else ProfileSettings.from_env()
    RE = RunEngine({})
    # Subscribed first: an unreachable Tiled (or bus) fails the start-up
    # before the devices are connected.
    writer: DurableTiledWriter | BusPublisher
    if settings.bus_url:
        # The facility layout: documents leave over the bus; the writer
        # service, not this worker, talks to Tiled.
        from ...storage.bus import BusOptions, BusPublisher

        writer = BusPublisher(
            BusOptions(settings.bus_url),
            settings.bus_beamline,
            journal_dir=settings.journal_dir,
        )
        RE.subscribe(writer)
    else:
        writer = subscribe_tiled_writer(
            RE,
            settings.tiled_uri,
            settings.tiled_api_key,
            external_dirs=[settings.data_dir],
            journal_dir=settings.journal_dir,
        )
    beamline = build_beamline(settings)
    flyscans: dict[str, Callable[..., Any]] = dict(queue_plans(beamline))
    # bluesky's own step plans, for the motors and detectors by name.
    flyscans.update({"count": count, "scan": scan, "mv": mv})
    return QueueSession(RE=RE, beamline=beamline, writer=writer, plans=flyscans)
