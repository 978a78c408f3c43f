"""Benchmark the simulated PandA: IOC start-up time and streaming rate.

Run on demand (not a test)::

    .venv/bin/python benchmarks/sim_bench.py [--seconds 5]

Prints:
- the time from starting the real PandABlocks-ioc against the simulator until
  its PVs answer, and the simulator's own start-up;
- frames/s and MB/s the simulator streams to a raw data-port client with 4
  captured fields, CLOCK1 triggering PCAP at increasing rates, and whether it
  kept up with real time (simulated seconds / wall seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Arm, Disarm, Raw
from pandablocks.responses import EndData, FrameData, StartData

FIELDS_4 = [
    "PCAP.TS_TRIG.CAPTURE=Value",
    "COUNTER1.OUT.CAPTURE=Value",
    "COUNTER2.OUT.CAPTURE=Value",
    "INENC1.VAL.CAPTURE=Value",
]


async def stream_rate(host: str, rate_hz: float, seconds: float) -> dict[str, float]:
    period = 1.0 / rate_hz
    async with AsyncioClient(host) as client:
        for line in [
            "*CAPTURE=",
            *FIELDS_4,
            "CLOCK1.ENABLE=ZERO",
            "CLOCK1.PERIOD.UNITS=s",
            f"CLOCK1.PERIOD={period:.12g}",
            "CLOCK1.WIDTH=0",
            "COUNTER1.TRIG=CLOCK1.OUT",
            "COUNTER1.ENABLE=PCAP.ACTIVE",
            "COUNTER2.TRIG=CLOCK1.OUT",
            "COUNTER2.ENABLE=PCAP.ACTIVE",
            "PCAP.ENABLE=ONE",
            "PCAP.GATE=ONE",
            "PCAP.TRIG=CLOCK1.OUT",
            "CLOCK1.ENABLE=PCAP.ACTIVE",
        ]:
            await client.send(Raw([line]))
        frames = 0
        nbytes = 0
        t0 = time.monotonic()
        started = False
        async for data in client.data(scaled=False, frame_timeout=None):
            if isinstance(data, StartData):
                started = True
                t0 = time.monotonic()
            elif isinstance(data, FrameData):
                frames += len(data.data)
                nbytes += data.data.nbytes
                if time.monotonic() - t0 >= seconds:
                    await client.send(Disarm())
            elif isinstance(data, EndData):
                break
            elif not started:
                await client.send(Arm())
        wall = time.monotonic() - t0
        expected = rate_hz * wall
    return {
        "rate_hz": rate_hz,
        "frames_per_s": frames / wall,
        "mb_per_s": nbytes / wall / 1e6,
        "realtime": frames / expected if expected else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="1000,10000,50000,100000")
    args = parser.parse_args()
    from sim_ioc.launcher import simulated_beamline

    t0 = time.monotonic()
    with simulated_beamline(prefix="BENCH") as beamline:
        startup = time.monotonic() - t0
        os.environ.update(beamline.env)
        print(f"simulator + IOC start-up until PVs answer: {startup:.2f} s")
        print(f"{'rate Hz':>10} {'frames/s':>10} {'MB/s':>7} {'real-time':>9}")
        for rate in (float(r) for r in args.rates.split(",")):
            r = asyncio.run(stream_rate(beamline.panda_host, rate, args.seconds))
            print(
                f"{r['rate_hz']:>10.0f} {r['frames_per_s']:>10.0f} "
                f"{r['mb_per_s']:>7.2f} {r['realtime']:>9.2f}"
            )


if __name__ == "__main__":
    main()
