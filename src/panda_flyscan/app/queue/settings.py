"""What the queue server's start-up profile reads from its environment.

The RE Manager's worker is a process of its own: everything the profile
needs (which beamline, its PVs, where Tiled is, where data go) reaches it as
environment variables, the same names ``panda-flyscan sim`` prints. This
module is the one place that names them, read by the profile
(``profile/00-panda-flyscan.py``, through :func:`.session.open_session`)
and written by the launcher (:mod:`.server`).

================================  =============================================
variable                          what
================================  =============================================
``PANDA_FLYSCAN_BEAMLINE``        ``sim`` (default): the simulated beamline's
                                  devices and cabling; ``real``: a PandA and
                                  motor records from the PVs below
``PANDA_PREFIX``                  the PandA IOC's prefix (``SIM:PANDA:``)
``MOTOR_PV``, ``MOTOR_PV_Y``,     motor records x, y, z (real: each one given
``MOTOR_PV_Z``                    is a motor)
``DETECTOR_PREFIX``,              the simulated area detectors det, det2 (sim
``DETECTOR2_PREFIX``              only)
``PANDA_HOST``                    the PandA's address (its control port,
                                  8888): spec_scan streams its table there,
                                  so a scan can be paused and resumed (sim:
                                  the simulated PandA's; unset: fixed tables
                                  only)
``PANDA_FLYSCAN_ENCODERS``        real: which INENC reads which motor,
                                  ``x=1,y=2,z=3`` (the default)
``TILED_URI``, ``TILED_API_KEY``  the Tiled server runs are written to
``PANDA_FLYSCAN_DATA_DIR``        where the PandA and detectors write HDF5
                                  (as their IOCs see it; Tiled must read it)
``PANDA_FLYSCAN_DATA_URI``        real: how Tiled reaches that directory, if
                                  mounted elsewhere
``PANDA_FLYSCAN_JOURNAL_DIR``     the Tiled writer's journal (default: its own)
``PANDA_FLYSCAN_BUS``             publish documents to this NATS JetStream
                                  server instead of writing Tiled in the
                                  worker (``panda-flyscan tiled writer
                                  --bus`` writes them; docs/bus.md)
``PANDA_FLYSCAN_BUS_NAME``        the beamline's name on the bus (its subject
                                  ``bluesky.<name>.documents``; default: the
                                  PandA's prefix)
================================  =============================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...storage.config import CLIENT_API_KEY_ENV

__all__ = [
    "BEAMLINE_ENV",
    "BUS_NAME_ENV",
    "BUS_URL_ENV",
    "DATA_DIR_ENV",
    "DATA_URI_ENV",
    "DEFAULT_ENCODERS",
    "ENCODERS_ENV",
    "JOURNAL_DIR_ENV",
    "MOTOR_VARIABLES",
    "PANDA_HOST_ENV",
    "TILED_API_KEY_ENV",
    "TILED_URI_ENV",
    "BeamlineKind",
    "ProfileError",
    "ProfileSettings",
]

BEAMLINE_ENV = "PANDA_FLYSCAN_BEAMLINE"
DATA_DIR_ENV = "PANDA_FLYSCAN_DATA_DIR"
DATA_URI_ENV = "PANDA_FLYSCAN_DATA_URI"
JOURNAL_DIR_ENV = "PANDA_FLYSCAN_JOURNAL_DIR"
BUS_URL_ENV = "PANDA_FLYSCAN_BUS"
BUS_NAME_ENV = "PANDA_FLYSCAN_BUS_NAME"
#: The name ``panda-flyscan sim`` prints for the simulated PandA's address.
PANDA_HOST_ENV = "PANDA_HOST"
ENCODERS_ENV = "PANDA_FLYSCAN_ENCODERS"
TILED_URI_ENV = "TILED_URI"
#: The name Tiled's own client reads.
TILED_API_KEY_ENV = CLIENT_API_KEY_ENV
#: The motors' names in the profile, and the variable naming each record.
MOTOR_VARIABLES: Mapping[str, str] = {
    "x": "MOTOR_PV",
    "y": "MOTOR_PV_Y",
    "z": "MOTOR_PV_Z",
}
#: A real beamline's encoders unless ``PANDA_FLYSCAN_ENCODERS`` says otherwise
#: (the simulated beamline's cabling).
DEFAULT_ENCODERS: Mapping[str, int] = {"x": 1, "y": 2, "z": 3}

BeamlineKind = Literal["sim", "real"]


class ProfileError(RuntimeError):
    """The profile's environment is missing a variable or has a bad value."""


def _parse_encoders(text: str) -> dict[str, int]:
    """``x=1,y=2`` -> ``{"x": 1, "y": 2}``; ProfileError naming the variable."""
    encoders: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, number = part.partition("=")
        if not eq or not name.strip() or not number.strip().isdigit():
            raise ProfileError(
                f"{ENCODERS_ENV}={text!r}: write MOTOR=INENC,... e.g. 'x=1,y=2'"
            )
        encoders[name.strip()] = int(number)
    return encoders


@dataclass(frozen=True)
class ProfileSettings:
    """Everything the start-up profile builds the session from.

    Build it with :meth:`from_env` (the worker does) or directly, and hand it
    to a worker as :meth:`to_env`.
    """

    tiled_uri: str
    tiled_api_key: str | None
    data_dir: Path
    beamline: BeamlineKind = "sim"
    panda_prefix: str | None = None
    #: Motor name -> record; only those given.
    motor_pvs: Mapping[str, str] = field(default_factory=dict)
    #: Detector variable -> prefix (sim: DETECTOR_PREFIX, DETECTOR2_PREFIX).
    detector_prefixes: Mapping[str, str] = field(default_factory=dict)
    encoders: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_ENCODERS))
    data_uri: str | None = None
    journal_dir: Path | None = None
    #: NATS JetStream server to publish documents to (None: write Tiled here).
    bus_url: str | None = None
    #: The beamline's name on the bus (None: from the PandA's prefix).
    bus_name: str | None = None
    #: The PandA's address, for its control port (None: not reachable).
    panda_host: str | None = None

    @property
    def bus_beamline(self) -> str:
        """The name documents are published under (a NATS subject token)."""
        name = self.bus_name or (self.panda_prefix or "beamline").split(":")[0]
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfileSettings:
        """Read the settings from ``env`` (default: ``os.environ``).

        Raises :class:`ProfileError` naming every missing variable.
        """
        env = os.environ if env is None else env
        kind = env.get(BEAMLINE_ENV, "sim") or "sim"
        if kind not in ("sim", "real"):
            raise ProfileError(f"{BEAMLINE_ENV}={kind!r}: must be 'sim' or 'real'")
        required = [TILED_URI_ENV, DATA_DIR_ENV, "PANDA_PREFIX", "MOTOR_PV"]
        if kind == "sim":
            required.append("DETECTOR_PREFIX")
        if missing := [name for name in required if not env.get(name)]:
            raise ProfileError(
                f"the queue server's profile needs {', '.join(missing)} in its "
                "environment (`panda-flyscan queue serve` sets them; see "
                "panda_flyscan.app.queue.settings)"
            )
        return cls(
            tiled_uri=env[TILED_URI_ENV],
            tiled_api_key=env.get(TILED_API_KEY_ENV) or None,
            data_dir=Path(env[DATA_DIR_ENV]),
            beamline="sim" if kind == "sim" else "real",
            panda_prefix=env["PANDA_PREFIX"],
            motor_pvs={
                name: env[var] for name, var in MOTOR_VARIABLES.items() if env.get(var)
            },
            detector_prefixes={
                var: env[var]
                for var in ("DETECTOR_PREFIX", "DETECTOR2_PREFIX")
                if env.get(var)
            },
            encoders=_parse_encoders(env[ENCODERS_ENV])
            if env.get(ENCODERS_ENV)
            else dict(DEFAULT_ENCODERS),
            data_uri=env.get(DATA_URI_ENV) or None,
            journal_dir=Path(env[JOURNAL_DIR_ENV])
            if env.get(JOURNAL_DIR_ENV)
            else None,
            bus_url=env.get(BUS_URL_ENV) or None,
            bus_name=env.get(BUS_NAME_ENV) or None,
            panda_host=env.get(PANDA_HOST_ENV) or None,
        )

    def to_env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back as these settings."""
        env = {
            BEAMLINE_ENV: self.beamline,
            TILED_URI_ENV: self.tiled_uri,
            DATA_DIR_ENV: str(self.data_dir),
            ENCODERS_ENV: ",".join(f"{k}={v}" for k, v in self.encoders.items()),
            **{MOTOR_VARIABLES[name]: pv for name, pv in self.motor_pvs.items()},
            **self.detector_prefixes,
        }
        if self.panda_prefix:
            env["PANDA_PREFIX"] = self.panda_prefix
        if self.tiled_api_key:
            env[TILED_API_KEY_ENV] = self.tiled_api_key
        if self.data_uri:
            env[DATA_URI_ENV] = self.data_uri
        if self.journal_dir is not None:
            env[JOURNAL_DIR_ENV] = str(self.journal_dir)
        if self.bus_url:
            env[BUS_URL_ENV] = self.bus_url
        if self.bus_name:
            env[BUS_NAME_ENV] = self.bus_name
        if self.panda_host:
            env[PANDA_HOST_ENV] = self.panda_host
        return env
