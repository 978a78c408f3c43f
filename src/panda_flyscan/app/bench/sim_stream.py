"""The simulated PandA alone: a process of its own, streaming captures to a
raw data-port client (no IOC, no HDF5)."""

from __future__ import annotations

import subprocess
import sys
import time

from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Arm, Disarm, Raw
from pandablocks.responses import EndData, FrameData, StartData

from panda_flyscan.app.bench.capture_setup import FIELDS, wiring

__all__ = ["standalone_simulator", "stream_rate"]


def standalone_simulator(host: str) -> subprocess.Popen[str]:
    """Start ``python -m sim_ioc.panda`` on ``host``; return once it says READY."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim_ioc.panda", "--host", host],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        proc.kill()
        raise RuntimeError("the simulator did not start")
    return proc


async def stream_rate(
    host: str, rate_hz: float, seconds: float, n_fields: int = 4
) -> dict[str, float]:
    """Stream ``seconds`` of captures at ``rate_hz`` to a raw data-port client."""
    async with AsyncioClient(host) as client:
        for line in ["*CAPTURE=", *FIELDS[n_fields], *wiring(rate_hz, n_fields)]:
            await client.send(Raw([line]))
        frames = 0
        nbytes = 0
        t0 = time.monotonic()
        started = disarmed = False
        async for data in client.data(scaled=False, frame_timeout=None):
            if isinstance(data, StartData):
                started = True
                t0 = time.monotonic()
            elif isinstance(data, FrameData):
                frames += len(data.data)
                nbytes += data.data.nbytes
                if not disarmed and time.monotonic() - t0 >= seconds:
                    disarmed = True
                    await client.send(Disarm())
            elif isinstance(data, EndData):
                break
            elif not started:
                await client.send(Arm())
        wall = time.monotonic() - t0
        await client.send(Raw(["CLOCK1.ENABLE=ZERO"]))
    expected = rate_hz * wall
    return {
        "rate_hz": rate_hz,
        "frames_per_s": frames / wall,
        "mb_per_s": nbytes / wall / 1e6,
        "realtime": frames / expected if expected else 0.0,
    }
