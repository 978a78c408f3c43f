"""Benchmark the simulated PandA: the capture rates it streams in real time.

Run on demand (not a test)::

    .venv/bin/python benchmarks/sim_bench.py [--seconds 5] [--rates 50000,100000]

For 4 and 16 captured fields (:data:`FIELDS`), CLOCK1 triggering PCAP and the
counters at increasing rates, prints frames/s, MB/s and the real-time ratio
(frames delivered / frames the trigger rate asks for) of

- the simulator alone, streaming to a raw data-port client;
- the real PandABlocks-ioc writing HDF5 (frames counted in the file), and
  whether the capture overran;

then the highest sustained rate of each, which component limits it (CPU of
the simulator and of the IOC during the runs), and a cProfile summary of the
simulator on the slowest configuration, run in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import Arm, Disarm, Get, Raw
from pandablocks.responses import EndData, FrameData, StartData

#: Capture lines for 4 and 16 fields; every field changes with the trigger
#: except the encoders (their axes stand still).
FIELDS: dict[int, list[str]] = {
    4: [
        "PCAP.TS_TRIG.CAPTURE=Value",
        "COUNTER1.OUT.CAPTURE=Value",
        "COUNTER2.OUT.CAPTURE=Value",
        "INENC1.VAL.CAPTURE=Value",
    ],
    16: [
        "PCAP.TS_TRIG.CAPTURE=Value",
        "PCAP.TS_START.CAPTURE=Value",
        "PCAP.TS_END.CAPTURE=Value",
        "PCAP.GATE_DURATION.CAPTURE=Value",
        "PCAP.BITS0.CAPTURE=Value",
        "PCAP.BITS1.CAPTURE=Value",  # CLOCK1.OUT is bit 37
        *(f"COUNTER{n}.OUT.CAPTURE=Value" for n in range(1, 9)),
        "INENC1.VAL.CAPTURE=Value",
        "INENC2.VAL.CAPTURE=Value",
    ],
}
#: Kept for older callers.
FIELDS_4 = FIELDS[4]


def _counters(n_fields: int) -> list[int]:
    return [
        int(line.split(".")[0].removeprefix("COUNTER"))
        for line in FIELDS[n_fields]
        if line.startswith("COUNTER")
    ]


def wiring(rate_hz: float, n_fields: int) -> list[str]:
    """Control-port lines: CLOCK1 at ``rate_hz`` triggers PCAP and the
    captured counters (counter n steps by n) while PCAP is active."""
    lines = [
        "CLOCK1.ENABLE=ZERO",
        "CLOCK1.PERIOD.UNITS=s",
        f"CLOCK1.PERIOD={1.0 / rate_hz:.12g}",
        "CLOCK1.WIDTH=0",
    ]
    for n in _counters(n_fields):
        lines += [
            f"COUNTER{n}.TRIG=CLOCK1.OUT",
            f"COUNTER{n}.ENABLE=PCAP.ACTIVE",
            f"COUNTER{n}.STEP={n}",
        ]
    return [
        *lines,
        "PCAP.ENABLE=ONE",
        "PCAP.GATE=ONE",
        "PCAP.TRIG=CLOCK1.OUT",
        "PCAP.TRIG_EDGE=Rising",
        "CLOCK1.ENABLE=PCAP.ACTIVE",
    ]


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


def _capture_signals(panda: Any, n_fields: int) -> dict[str, tuple[Any, Any]]:
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


def _frames_in_file(path: Path, timeout: float = 10.0) -> int:
    """Frames in the HDF5 file the IOC wrote (waits for the IOC to close it)."""
    import h5py

    deadline = time.monotonic() + timeout
    while True:
        try:
            with h5py.File(path, "r") as f:
                return max(
                    (len(d) for d in f.values() if isinstance(d, h5py.Dataset)),
                    default=0,
                )
        except OSError:
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.05)


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
        DetectorTrigger,
        StaticFilenameProvider,
        StaticPathProvider,
        TriggerInfo,
        init_devices,
    )
    from ophyd_async.fastcs.panda import HDFPanda

    wanted = int(rate_hz * seconds)
    name = f"bench_{n_fields}_{int(rate_hz)}"
    provider = StaticPathProvider(StaticFilenameProvider(name), data_dir)
    async with init_devices():
        panda = HDFPanda(env["PANDA_PREFIX"], provider)
    # The clock starts after kickoff: ophyd-async arms PCAP in prepare, and
    # frames before kickoff would upset its frame count.
    *lines, start_clock = wiring(rate_hz, n_fields)
    async with AsyncioClient(env["PANDA_HOST"]) as client:
        for line in lines:
            await client.send(Raw([line]))
    chosen = {line.rsplit(".", 1)[0] for line in FIELDS[n_fields]}
    writes = []
    for key, (capture, dataset) in _capture_signals(panda, n_fields).items():
        on = key in chosen
        writes.append(capture.set("Value" if on else "No"))
        if on:
            writes.append(dataset.set(key.replace(".", "_").lower()))
    await asyncio.gather(*writes)
    # The wiring went to the PandA behind the IOC's back: arm once the IOC's
    # *CHANGES poll has reported this run's clock period. Polled with gets:
    # the IOC's CLOCK1:PERIOD record does not post monitor updates for it.
    period = 1.0 / rate_hz
    clock_period = panda.clock[1].period  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while abs(await clock_period.get_value() - period) > 1e-3 * period:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the IOC did not report CLOCK1.PERIOD={period:g} s")
        await asyncio.sleep(0.05)

    samples: list[tuple[float, int]] = []
    await panda.stage()
    completed = True
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=wanted, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        async with AsyncioClient(env["PANDA_HOST"]) as client:
            await client.send(Raw([start_clock]))

        async def watch() -> None:
            while True:
                samples.append(
                    (time.monotonic(), await panda.data.num_captured.get_value())
                )
                await asyncio.sleep(0.02)

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
        async with AsyncioClient(env["PANDA_HOST"]) as client:
            await client.send(Raw(["CLOCK1.ENABLE=ZERO"]))
            completion = str(await client.send(Get("*PCAP.COMPLETION")))
            await client.send(Disarm())
        await panda.unstage()
    frames = _frames_in_file(data_dir / f"{name}.h5")
    # From the first frames the IOC reported to the last.
    moving = [(t, n) for t, n in samples if n > 0]
    t_first, n_first = moving[0] if moving else (0.0, 0)
    t_last = next((t for t, n in moving if n >= frames), samples[-1][0])
    wall = max(t_last - t_first, 1e-9)
    frame_bytes = sum(_raw_bytes(line) for line in FIELDS[n_fields])
    # No file, or nothing after the first report: the IOC did not keep up.
    per_s = (frames - n_first) / wall if moving and frames > n_first else 0.0
    return {
        "rate_hz": rate_hz,
        "frames_per_s": per_s,
        "mb_per_s": per_s * frame_bytes / 1e6,
        "realtime": per_s / rate_hz if completed else 0.0,
        "overrun": "overrun" in completion.lower() or not completed,
        "frames_in_file": frames,
    }


def _raw_bytes(capture_line: str) -> int:
    """Bytes a field takes in a raw frame (timestamps are 64-bit)."""
    return 8 if capture_line.startswith(("PCAP.TS_",)) else 4


def highest_sustained(
    measure: Callable[[float], dict[str, Any]],
    rates: Sequence[float],
    threshold: float = 0.98,
) -> dict[str, Any]:
    """Measure each rate (ascending, stopping after two failures in a row);
    return the highest whose realtime >= ``threshold`` without overrun.

    ``{"rate_hz": best or 0, "best": its result or None, "results": all}``.
    """
    results: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failures = 0
    for rate in sorted(rates):
        result = measure(rate)
        results.append(result)
        if result["realtime"] >= threshold and not result.get("overrun", False):
            best, failures = result, 0
        else:
            failures += 1
            if failures >= 2:
                break
    return {
        "rate_hz": best["rate_hz"] if best else 0.0,
        "best": best,
        "results": results,
    }


# -- in-process profile -----------------------------------------------------------


def profile_simulator(rate_hz: float, n_fields: int, seconds: float = 1.0) -> str:
    """Simulate ``seconds`` at ``rate_hz`` in-process, encoding frames as the
    data port does; return the wall-time ratio and a cProfile summary."""
    from sim_ioc.panda.capture import Frames, Start
    from sim_ioc.panda.device import SimulatedPanda
    from sim_ioc.panda.protocol import control, data

    panda = SimulatedPanda()
    session = control.Session()
    for line in ["*CAPTURE=", *FIELDS[n_fields], *wiring(rate_hz, n_fields)]:
        control.respond(panda, session, control.Command(line))
    options = data.Options.parse("XML FRAMED RAW")
    state: dict[str, Any] = {}

    def on_event(event: object) -> None:
        if isinstance(event, Start):
            state["plan"] = event.plan
        elif isinstance(event, Frames):
            data.encode_frames(state["plan"], options, event.frames)

    panda.subscribe(on_event)
    control.respond(panda, session, control.Command("*PCAP.ARM="))
    start = panda.now
    end = start + int(seconds * 125e6)
    step = 125_000  # 1 ms, as the server's loop roughly does
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    tick = start
    while tick < end:
        tick = min(end, tick + step)
        while not panda.advance(tick, 5000):
            pass
    profiler.disable()
    wall = time.perf_counter() - t0
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    summary = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    return (
        f"in-process, {n_fields} fields at {rate_hz:.0f} Hz: {panda.captured} frames "
        f"in {wall:.3f} s under cProfile (x{seconds / wall:.1f} real time), "
        f"{panda.engine.train_edges} of {2 * panda.captured} edges in "
        f"{panda.engine.train_batches} trains\n{summary}"
    )


# -- processes --------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children still running."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class _Cpu:
    """CPU use (fraction of one core) of some processes over a block."""

    def __init__(self, pids: Mapping[str, int]):
        self.pids = dict(pids)
        self.use: dict[str, float] = {}

    def __enter__(self) -> _Cpu:
        self._t0 = time.monotonic()
        self._c0 = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        self.use = {
            k: (_cpu_seconds(p) - self._c0[k]) / wall for k, p in self.pids.items()
        }


def _standalone_simulator(host: str) -> subprocess.Popen[str]:
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


def profile_process(
    pid: int, run: Callable[[], Any], py_spy: str, top: int = 15
) -> str:
    """Sample ``pid`` (and its children) with py-spy while ``run()`` runs; the
    functions the samples were in (own time) and the packages (inclusive)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        spy = subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(pid), "--subprocesses"),
                *("--rate", "250", "--format", "raw", "--output", str(out)),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run()
        finally:
            spy.send_signal(2)  # py-spy writes its file on SIGINT
            _, err = spy.communicate(timeout=30)
        if not out.exists():
            return f"py-spy wrote nothing: {err.strip()[-300:]}"
        own: dict[str, int] = {}
        package: dict[str, int] = {}
        total = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf = frames[-1].split(" (")[0] + " (" + _module(frames[-1]) + ")"
            own[leaf] = own.get(leaf, 0) + n
            for pkg in {_package(f) for f in frames}:
                package[pkg] = package.get(pkg, 0) + n
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples; own time:"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {n / total:6.1%}  {name}")
    lines.append("inclusive, by package:")
    for name, n in sorted(package.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {n / total:6.1%}  {name}")
    return "\n".join(lines)


def _module(frame: str) -> str:
    """``file.py`` of a py-spy frame ``func (path/file.py:line)``."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return Path(inside.split(":")[0]).name or "?"


def _package(frame: str) -> str:
    """The package of a frame: py-spy shortens site-packages paths to
    ``pkg/module.py`` and the standard library's to ``module.py``."""
    inside = frame.rpartition(" (")[2].split(":")[0]
    if "site-packages/" in inside:
        inside = inside.split("site-packages/", 1)[1]
    if inside.startswith("/") or not inside.endswith(".py"):
        return "other"
    return inside.split("/")[0] if "/" in inside else "python stdlib"


def _row(label: str, r: Mapping[str, Any], cpu: Mapping[str, float]) -> str:
    extra = ""
    if "overrun" in r:
        extra = f" {'yes' if r['overrun'] else 'no':>7} {r['frames_in_file']:>9}"
    else:
        extra = f" {'':>7} {'':>9}"
    use = " ".join(f"{k} {v:4.0%}" for k, v in cpu.items())
    return (
        f"{label:<12} {r['rate_hz']:>9.0f} {r['frames_per_s']:>10.0f} "
        f"{r['mb_per_s']:>6.2f} {r['realtime']:>6.3f}{extra}  {use}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="50000,100000,150000,200000,300000")
    parser.add_argument("--fields", default="4,16")
    parser.add_argument("--no-ioc", action="store_true", help="the simulator alone")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy executable: also profile the IOC on the slowest capture it "
        "could not sustain (pip install py-spy; needs ptrace, e.g. as root)",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    field_counts = [int(n) for n in args.fields.split(",")]
    header = (
        f"{'path':<12} {'rate Hz':>9} {'frames/s':>10} {'MB/s':>6} {'real':>6} "
        f"{'overrun':>7} {'in file':>9}  CPU (of one core)"
    )
    best: dict[tuple[str, int], dict[str, Any]] = {}
    cpu_at: dict[tuple[str, int], dict[float, dict[str, float]]] = {}

    # The simulator alone, on a loopback address of its own.
    host = "127.0.0.9"
    sim = _standalone_simulator(host)
    try:
        print(header)
        for n in field_counts:
            cpus: dict[float, dict[str, float]] = {}

            def alone(rate: float, n: int = n, cpus: dict = cpus) -> dict[str, Any]:
                with _Cpu({"sim": sim.pid}) as cpu:
                    r = asyncio.run(stream_rate(host, rate, args.seconds, n))
                cpus[rate] = cpu.use
                print(_row(f"sim {n:>2}f", r, cpu.use), flush=True)
                return r

            best[("sim", n)] = highest_sustained(alone, rates)
            cpu_at[("sim", n)] = cpus
    finally:
        sim.terminate()
        sim.wait(10)

    if not args.no_ioc:
        from panda_flyscan.app.simulated.launcher import simulated_beamline

        with simulated_beamline(prefix="BENCH") as beamline:
            os.environ.update(beamline.env)
            pids = {p.name: p.pid for p in beamline.processes if p.pid is not None}
            loop = asyncio.new_event_loop()
            with tempfile.TemporaryDirectory() as tmp:
                for n in field_counts:
                    cpus = {}

                    def through_ioc(
                        rate: float, n: int = n, cpus: dict = cpus
                    ) -> dict[str, Any]:
                        with _Cpu(pids) as cpu:
                            r = loop.run_until_complete(
                                ioc_capture_rate(
                                    beamline.env, rate, args.seconds, n, Path(tmp)
                                )
                            )
                        cpus[rate] = cpu.use
                        print(_row(f"ioc {n:>2}f", r, cpu.use), flush=True)
                        return r

                    best[("ioc", n)] = highest_sustained(through_ioc, rates)
                    cpu_at[("ioc", n)] = cpus
                if args.py_spy:
                    n = max(field_counts)
                    b = best[("ioc", n)]
                    failed = [r for r in b["results"] if r["rate_hz"] > b["rate_hz"]]
                    rate = failed[0]["rate_hz"] if failed else b["rate_hz"]
                    print(
                        f"\nprofile of the IOC, {n} fields at {rate:.0f} Hz (py-spy):"
                    )
                    print(
                        profile_process(
                            pids["ioc"],
                            lambda: loop.run_until_complete(
                                ioc_capture_rate(
                                    beamline.env, rate, args.seconds, n, Path(tmp)
                                )
                            ),
                            args.py_spy,
                        )
                    )
            loop.close()

    print("\nhighest sustained (real time >= 0.98, no overrun):")
    for (path, n), b in best.items():
        r = b["best"] or {}
        tested = max(x["rate_hz"] for x in b["results"])
        capped = " (the highest rate tried)" if b["rate_hz"] == tested else ""
        print(
            f"  {path} {n:>2} fields: {b['rate_hz']:>9.0f} Hz, "
            f"{r.get('frames_per_s', 0):.0f} frames/s, {r.get('mb_per_s', 0):.2f} MB/s"
            f"{capped}"
        )
    print("\nwhat limits each (CPU at the first rate not sustained):")
    for (path, n), b in best.items():
        failed = [r for r in b["results"] if r["rate_hz"] > b["rate_hz"]]
        if not failed:
            print(f"  {path} {n:>2} fields: nothing up to the highest rate tried")
            continue
        cpu = cpu_at[(path, n)].get(failed[0]["rate_hz"], {})
        use = ", ".join(f"{k} {v:.0%}" for k, v in cpu.items())
        sim_cpu = cpu.get("sim", cpu.get("panda", 0.0))
        if sim_cpu > 0.8:
            why = "simulator CPU (one asyncio thread)"
        elif path == "ioc" and cpu.get("ioc", 0.0) > 0.8:
            why = "the IOC's CPU (it parses frames and writes HDF5 in Python)"
        elif path == "ioc":
            why = "the IOC or HDF5 writing (neither process saturates a core)"
        else:
            why = "not the simulator's CPU: the Python data client or machine load"
        print(f"  {path} {n:>2} fields: {why} [{use}]")
    slowest = max(field_counts)
    top = best.get(("sim", slowest), {}).get("rate_hz") or rates[0]
    print("\nprofile of the slowest configuration (simulator):")
    print(profile_simulator(max(top, rates[0]), slowest))


if __name__ == "__main__":
    main()
