"""``python -m sim_ioc --host 127.0.0.2 --prefix SIM``: the simulated beamline's
devices in one process, sharing one world and one clock.

* the simulated PandA on ``HOST`` (control port 8888, data port 8889), for the
  real PandABlocks-ioc the launcher starts beside it;
* the motor record ``PREFIX:M1``, driving the PandA's INENC1 axis;
* the area detector ``PREFIX:DET:`` (``cam1:``, ``HDF1:``), triggered by the
  PandA's TTLOUT1, imaging a sample on the motor, its exposure output cabled
  to the PandA's TTLIN1.

``--fmc-signal 'FMC_IN1=sine amplitude=2'`` chooses what an ADC channel sees
(as the control port's ``*SIM.SIGNAL``).

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

from caproto.asyncio.server import Context

from .ca import PutRefused
from .detector import DetectorConfig, SimAreaDetector
from .detector.ttl import LEVEL_SIGNALS
from .motor import MotorConfig, SimMotor
from .panda.device import SimulatedPanda
from .panda.fields import FieldError
from .panda.server import PandaServer, run_until_signalled
from .panda.world_control import apply_sim_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim_ioc", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the PandA's address")
    parser.add_argument("--prefix", default="SIM", help="record prefix")
    parser.add_argument("--control-port", type=int, default=8888)
    parser.add_argument("--data-port", type=int, default=8889)
    motor = MotorConfig()
    parser.add_argument(
        "--motor-axis",
        default=motor.axis,
        help="the PandA INENC the motor's encoder is wired to (default %(default)s)",
    )
    parser.add_argument(
        "--encoder-resolution",
        type=float,
        default=motor.resolution,
        help="encoder counts per motor unit (default %(default)s: 1 count/um)",
    )
    parser.add_argument(
        "--encoder-offset",
        type=float,
        default=motor.offset,
        help="encoder counts at dial position 0 (default %(default)s)",
    )
    detector = DetectorConfig()
    parser.add_argument(
        "--detector-ttlout",
        type=int,
        default=detector.ttlout,
        help="the PandA TTLOUT cabled to the detector's trigger (default %(default)s)",
    )
    parser.add_argument(
        "--readout-time",
        type=float,
        default=detector.readout_time,
        help="detector dead time after each exposure, s (default %(default)s)",
    )
    parser.add_argument(
        "--detector-ttlin",
        type=int,
        default=detector.ttlin,
        choices=range(7),
        metavar="{0..6}",
        help="the PandA TTLIN the detector's exposure output is cabled to, 0: none "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--detector-ttlin-signal",
        default=detector.ttlin_signal,
        choices=LEVEL_SIGNALS,
        help="what that output shows: high while exposing, or while busy "
        "(exposing or reading out) (default %(default)s)",
    )
    parser.add_argument(
        "--fmc-signal",
        action="append",
        default=[],
        metavar="FMC_IN<ch>=SIGNAL",
        help="what an ADC channel sees, as *SIM.SIGNAL takes it, e.g. "
        "'FMC_IN1=sine amplitude=2 frequency=1000' (repeatable; default 0 V)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser


def make_panda(fmc_signals: list[str]) -> SimulatedPanda:
    """The simulated PandA, its FMC_IN channels fed ``FMC_IN<ch>=SIGNAL`` as
    ``*SIM.SIGNAL`` takes them; FieldError saying what is wrong with one."""
    panda = SimulatedPanda()
    for spec in fmc_signals:
        name, eq, value = spec.partition("=")
        if not eq:
            raise FieldError(f"{spec!r} is not FMC_IN<ch>=SIGNAL")
        apply_sim_command(panda, f"SIGNAL.{name.strip()}", value)
    return panda


async def serve(args: argparse.Namespace, panda: SimulatedPanda | None = None) -> None:
    """Run until cancelled; prints READY once everything listens."""
    panda = panda if panda is not None else make_panda(args.fmc_signal)
    server = PandaServer(panda, args.host, args.control_port, args.data_port)
    await server.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        motor = SimMotor(
            server,
            f"{args.prefix}:M1",
            MotorConfig(
                axis=args.motor_axis,
                resolution=args.encoder_resolution,
                offset=args.encoder_offset,
            ),
        )
        pvdb = dict(motor.pvs)
        detector = SimAreaDetector(
            server,
            f"{args.prefix}:DET:",
            motor.user_position,
            DetectorConfig(
                ttlout=args.detector_ttlout,
                readout_time=args.readout_time,
                ttlin=args.detector_ttlin,
                ttlin_signal=args.detector_ttlin_signal,
            ),
            local_pv=pvdb.get,
        )
        pvdb.update(detector.pvs)
        interfaces = os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1").split()
        listening = asyncio.Event()

        async def on_startup(async_lib: object) -> None:
            listening.set()

        ca_server = asyncio.create_task(
            Context(pvdb, interfaces).run(startup_hook=on_startup)
        )
        tasks = [ca_server, asyncio.create_task(motor.run())]
        tasks.append(asyncio.create_task(detector.run()))
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


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    try:
        panda = make_panda(args.fmc_signal)
    except FieldError as exc:
        parser.error(f"--fmc-signal: {exc}")
    logging.basicConfig(level=args.log_level.upper())
    logging.getLogger("caproto.circ").addFilter(_RefusalsWithoutTraceback())

    run_until_signalled(serve(args, panda))


if __name__ == "__main__":
    main()
