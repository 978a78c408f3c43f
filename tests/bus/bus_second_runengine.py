"""A second RunEngine, in its own process (its CA/PVA clients point at a
second simulated beamline), publishing a time_scan to the bus.

``python bus_second_runengine.py DATA_DIR BUS_URL BEAMLINE FRAMES``; prints
``START <uid>`` at the start document and ``DONE <uid> <hdf5 path>`` at the
end. The beamline's PVs come from the environment (PANDA_PREFIX, MOTOR_PV,
DETECTOR_PREFIX), as ``panda-flyscan sim`` prints them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from bluesky import RunEngine

from panda_flyscan.app.simulated import simulated_beamline_devices
from panda_flyscan.plans import time_scan
from panda_flyscan.storage.bus import BusOptions, BusPublisher


def main() -> None:
    data_dir, bus_url, beamline, frames = sys.argv[1:5]
    RE = RunEngine({})
    publisher = BusPublisher(
        BusOptions(bus_url), beamline, journal_dir=Path(data_dir) / "journal"
    )
    RE.subscribe(publisher)

    def announce(name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            print(f"START {doc['uid']}", flush=True)

    RE.subscribe(announce)
    devices = simulated_beamline_devices(
        data_dir,
        panda_prefix=os.environ["PANDA_PREFIX"],
        motor_pv=os.environ["MOTOR_PV"],
        detector_prefix=os.environ["DETECTOR_PREFIX"],
    )
    (uid,) = RE(time_scan(devices.panda, int(frames), 1e-3))  # pyright: ignore[reportGeneralTypeIssues]
    publisher.close()
    info = devices.path_provider.last["panda"]
    print(f"DONE {uid} {Path(info.directory_path) / f'{info.filename}.h5'}", flush=True)


if __name__ == "__main__":
    main()
