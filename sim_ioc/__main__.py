"""``python -m sim_ioc --host 127.0.0.2 --prefix SIM``: the simulated beamline's
devices in one process, sharing one world and one clock.

* the simulated PandA on ``HOST`` (control port 8888, data port 8889), for the
  real PandABlocks-ioc the launcher starts beside it;
* the motor records ``PREFIX:M1``, ``M2``, ``M3`` (x, y, z), driving the
  PandA's INENC1, INENC2, INENC3 axes;
* the area detector ``PREFIX:DET:`` (``cam1:``, ``HDF1:``), triggered by the
  PandA's TTLOUT1, its exposure output cabled to the PandA's TTLIN1;
* a slower one, ``PREFIX:DET2:`` (5 ms readout), triggered by TTLOUT2;
* both imaging a sample on the M1 (x) and M2 (y) motors;
* the storage ring's beam current ``PREFIX:RING:CURRENT`` (mA, writable, for
  suspenders) and ``PREFIX:RING:DUMP`` (1 dumps the beam, 0 refills it).

``--fmc-signal 'FMC_IN1=sine amplitude=2'`` chooses what an ADC channel sees
(as the control port's ``*SIM.SIGNAL``). Every option is a field of
:class:`sim_ioc.config.SimulatorConfig`; the launcher passes the whole model
as ``--config-json``.

The motor and detector are served over Channel Access by caproto, on the
interface and port of ``EPICS_CAS_INTF_ADDR_LIST`` and ``EPICS_CAS_SERVER_PORT``
(the launcher sets them; beacons per ``EPICS_CAS_BEACON_*``). Everything runs in
one asyncio loop, so the devices see the PandA's ticks and its world exactly.
Prints ``READY`` once the PandA's ports and the CA server listen; stops cleanly
on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os

from .ca import PutRefused, Server
from .config import SimulatorConfig, add_arguments, config_from_arguments, make_panda
from .detector import SimAreaDetector
from .motor import SimMotor
from .panda.device import SimulatedPanda
from .panda.server import PandaServer, run_until_signalled
from .ring import StorageRing

__all__ = ["main", "make_panda", "serve"]


async def serve(config: SimulatorConfig, panda: SimulatedPanda | None = None) -> None:
    """Run the devices ``config`` describes until cancelled; prints READY once
    everything listens. ``panda``: one already made from ``config``."""
    panda = panda if panda is not None else make_panda(config.fmc_signals)
    server = PandaServer(panda, config.host, config.control_port, config.data_port)
    await server.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        motors = [
            SimMotor(server, f"{config.prefix}:M{n}", motor_config)
            for n, motor_config in enumerate(config.motor_configs(), start=1)
        ]
        pvdb = {name: pv for motor in motors for name, pv in motor.pvs.items()}
        # The sample sits on M1 (x) and M2 (y); with one motor, y stays 0.
        y_at = motors[1].user_position if len(motors) > 1 else None
        detectors = [
            SimAreaDetector(
                server,
                f"{config.prefix}:{name}:",
                motors[0].user_position,
                detector_config,
                local_pv=pvdb.get,
                y_position_at=y_at,
            )
            for name, detector_config in (
                ("DET", config.detector_config()),
                ("DET2", config.detector2_config()),
            )
        ]
        for detector in detectors:
            pvdb.update(detector.pvs)
        pvdb.update(StorageRing(config.prefix, config.ring_current).pvs)
        interfaces = os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1").split()
        listening = asyncio.Event()

        async def on_startup(async_lib: object) -> None:
            listening.set()

        ca_server = asyncio.create_task(
            Server(pvdb, interfaces).run(startup_hook=on_startup)
        )
        tasks = [ca_server]
        tasks += [asyncio.create_task(motor.run()) for motor in motors]
        tasks += [asyncio.create_task(detector.run()) for detector in detectors]
        started = asyncio.create_task(listening.wait())
        await asyncio.wait([started, ca_server], return_when=asyncio.FIRST_COMPLETED)
        if not listening.is_set():
            started.cancel()
            await ca_server  # raises why it could not start
            raise RuntimeError("the CA server stopped during start-up")
        print("READY", flush=True)
        # Until cancelled, or until one of them fails (then say why).
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.stop()


class _RefusalsWithoutTraceback(logging.Filter):
    """caproto logs every refused put with a traceback; a refusal is ours, on
    purpose, and already logged saying why: keep one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PutRefused):
            record.msg = f"refused put: {record.exc_info[1]}"
            record.args = ()
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _UnheardBeacons(logging.Filter):
    """Beacons go to the beamline's repeater port on 127.0.0.1 (anything
    else would leave loopback); with no repeater there, each send is refused
    and caproto logs the refusal with a traceback. Beacons only hasten
    reconnection: drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to send beacon" not in record.getMessage()


def main() -> None:
    """``python -m sim_ioc``: build the configuration (refused with a usage
    error before anything starts if invalid), then serve until signalled."""
    parser = argparse.ArgumentParser(
        prog="python -m sim_ioc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    config = config_from_arguments(parser, parser.parse_args())
    logging.basicConfig(level=config.log_level)
    logging.getLogger("caproto.circ").addFilter(_RefusalsWithoutTraceback())
    logging.getLogger("caproto.ctx").addFilter(_UnheardBeacons())

    run_until_signalled(serve(config))


if __name__ == "__main__":
    main()
