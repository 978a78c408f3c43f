"""A capture through the real PandABlocks-ioc into HDF5: the capture
figure's measurement, through ophyd-async's HDFPanda as a flyscan uses it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Disarm, Get, Raw

from panda_flyscan.app.bench.capture_setup import FIELDS, frame_bytes, wiring
from panda_flyscan.polling import poll_until

__all__ = ["ioc_capture_rate"]

#: (time.monotonic(), frames the IOC reported captured) while capturing.
Samples = list[tuple[float, int]]


async def ioc_capture_rate(
    env: Mapping[str, str],
    rate_hz: float,
    seconds: float,
    n_fields: int,
    data_dir: Path,
) -> dict[str, float | bool]:
    """Capture ``seconds`` at ``rate_hz`` through the real IOC into HDF5.

    ``env`` is :attr:`SimulatedBeamline.env`; CA/PVA clients read it once, so
    call this from one event loop and process per beamline.
    """
    os.environ.update(env)
    from ophyd_async.core import (
        StaticFilenameProvider,
        StaticPathProvider,
        init_devices,
    )
    from ophyd_async.fastcs.panda import HDFPanda

    name = f"bench_{n_fields}_{int(rate_hz)}"
    provider = StaticPathProvider(StaticFilenameProvider(name), data_dir)
    async with init_devices():
        panda = HDFPanda(env["PANDA_PREFIX"], provider)
    # The clock starts after kickoff: ophyd-async arms PCAP in prepare, and
    # frames before kickoff would upset its frame count.
    *lines, start_clock = wiring(rate_hz, n_fields)
    await _send(env["PANDA_HOST"], lines)
    await _choose_fields(panda, n_fields)
    await _wait_clock_period(panda, 1.0 / rate_hz)
    samples, completed, completion = await _capture(
        panda, env["PANDA_HOST"], int(rate_hz * seconds), start_clock, seconds
    )
    frames = _frames_in_file(data_dir / f"{name}.h5")
    # From the first frames the IOC reported to the last.
    moving = [(t, n) for t, n in samples if n > 0]
    t_first, n_first = moving[0] if moving else (0.0, 0)
    t_last = next((t for t, n in moving if n >= frames), samples[-1][0])
    wall = max(t_last - t_first, 1e-9)
    # No file, or nothing after the first report: the IOC did not keep up.
    per_s = (frames - n_first) / wall if moving and frames > n_first else 0.0
    return {
        "rate_hz": rate_hz,
        "frames_per_s": per_s,
        "mb_per_s": per_s * frame_bytes(n_fields) / 1e6,
        "realtime": per_s / rate_hz if completed else 0.0,
        "overrun": "overrun" in completion.lower() or not completed,
        "frames_in_file": frames,
    }


async def _send(host: str, lines: list[str]) -> None:
    """Control-port lines straight to the PandA, one by one."""
    async with AsyncioClient(host) as client:
        for line in lines:
            await client.send(Raw([line]))


def _capture_signals(panda: Any) -> dict[str, tuple[Any, Any]]:
    """(capture, dataset) signals of the HDFPanda for every benchmark field."""
    signals: dict[str, tuple[Any, Any]] = {}
    for line in FIELDS[16] + FIELDS[4]:
        block, fld = line.split(".")[:2]
        name = block.rstrip("0123456789").lower()
        number = block[len(name) :]
        device = getattr(panda, name)
        if number:
            device = device[int(number)]
        attr = fld.lower()
        signals[f"{block}.{fld}"] = (
            getattr(device, f"{attr}_capture"),
            getattr(device, f"{attr}_dataset"),
        )
    return signals


async def _choose_fields(panda: Any, n_fields: int) -> None:
    """Capture the ``n_fields`` set through the IOC (each in a dataset of its
    own), and none of the other benchmark fields."""
    chosen = {line.rsplit(".", 1)[0] for line in FIELDS[n_fields]}
    writes = []
    for key, (capture, dataset) in _capture_signals(panda).items():
        on = key in chosen
        writes.append(capture.set("Value" if on else "No"))
        if on:
            writes.append(dataset.set(key.replace(".", "_").lower()))
    await asyncio.gather(*writes)


async def _wait_clock_period(panda: Any, period: float, timeout: float = 10) -> None:
    """Until the IOC reports CLOCK1.PERIOD = ``period``.

    The wiring went to the PandA behind the IOC's back: arm once the IOC's
    *CHANGES poll has reported this run's clock period. Polled with gets:
    the IOC's CLOCK1:PERIOD record does not post monitor updates for it.
    (An asyncio loop, not :func:`poll_until`: the gets need this event loop.)
    """
    clock_period = panda.clock[1].period
    deadline = time.monotonic() + timeout
    while abs(await clock_period.get_value() - period) > 1e-3 * period:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the IOC did not report CLOCK1.PERIOD={period:g} s")
        await asyncio.sleep(0.05)


async def _capture(
    panda: Any, host: str, wanted: int, start_clock: str, seconds: float
) -> tuple[Samples, bool, str]:
    """Stage, prepare and kick off the PandA for ``wanted`` frames, start the
    clock, wait for completion (at most 3 x ``seconds`` + 10 s), stop.

    Returns the frame counts sampled, whether it completed in time, and the
    PandA's ``*PCAP.COMPLETION``.
    """
    from ophyd_async.core import DetectorTrigger, TriggerInfo

    samples: Samples = []

    async def watch() -> None:
        while True:
            samples.append(
                (time.monotonic(), await panda.data.num_captured.get_value())
            )
            await asyncio.sleep(0.02)

    await panda.stage()
    completed = True
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=wanted, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        await _send(host, [start_clock])
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait_for(panda.complete(), timeout=3 * seconds + 10)
        except TimeoutError:
            completed = False
        watcher.cancel()
        samples.append((time.monotonic(), await panda.data.num_captured.get_value()))
    finally:
        # Stop the triggers first: frames beyond the N asked for would keep
        # the IOC busy writing into the next measurement.
        async with AsyncioClient(host) as client:
            await client.send(Raw(["CLOCK1.ENABLE=ZERO"]))
            completion = str(await client.send(Get("*PCAP.COMPLETION")))
            await client.send(Disarm())
        await panda.unstage()
    return samples, completed, completion


def _frames_in_file(path: Path, timeout: float = 10.0) -> int:
    """Frames in the HDF5 file the IOC wrote (waits for the IOC to close it;
    0 if it cannot be opened in ``timeout`` s)."""
    import h5py

    def longest() -> tuple[int]:
        # In a tuple: 0 frames is an answer, not a "not yet" to poll again.
        with h5py.File(path, "r") as f:
            datasets = (d for d in f.values() if isinstance(d, h5py.Dataset))
            return (max((len(d) for d in datasets), default=0),)

    try:
        (frames,) = poll_until(longest, timeout=timeout, retry_on=(OSError,))
    except OSError:
        return 0
    return frames
