"""Benchmark the simulated PandA: the capture rates it streams in real time.

Run on demand (not a test; ``panda-flyscan bench --only capture`` measures
the through-the-IOC figure within the suite)::

    .venv/bin/python -m panda_flyscan.app.bench.sim_bench [--seconds 5] \\
        [--rates 50000,100000]

For 4 and 16 captured fields (:data:`~.capture_setup.FIELDS`), CLOCK1
triggering PCAP and the counters at increasing rates, prints frames/s, MB/s
and the real-time ratio (frames delivered / frames the trigger rate asks
for) of

- the simulator alone, streaming to a raw data-port client
  (:mod:`~.sim_stream`);
- the real PandABlocks-ioc writing HDF5 (frames counted in the file), and
  whether the capture overran (:mod:`~.ioc_capture`);

then the highest sustained rate of each, which component limits it (CPU of
the simulator and of the IOC during the runs), and a cProfile summary of the
simulator on the slowest configuration, run in-process (:mod:`~.profiling`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from panda_flyscan.app.bench.capture_setup import highest_sustained
from panda_flyscan.app.bench.cpu import CpuUse
from panda_flyscan.app.bench.ioc_capture import ioc_capture_rate
from panda_flyscan.app.bench.profiling import profile_process, profile_simulator
from panda_flyscan.app.bench.sim_stream import standalone_simulator, stream_rate

__all__ = ["main"]

#: A highest_sustained result and the CPU use at each rate, by (path, fields).
Searches = dict[tuple[str, int], tuple[dict[str, Any], dict[float, dict[str, float]]]]

HEADER = (
    f"{'path':<12} {'rate Hz':>9} {'frames/s':>10} {'MB/s':>6} {'real':>6} "
    f"{'overrun':>7} {'in file':>9}  CPU (of one core)"
)


def _row(label: str, r: Mapping[str, Any], cpu: Mapping[str, float]) -> str:
    if "overrun" in r:
        extra = f" {'yes' if r['overrun'] else 'no':>7} {r['frames_in_file']:>9}"
    else:
        extra = f" {'':>7} {'':>9}"
    use = " ".join(f"{k} {v:4.0%}" for k, v in cpu.items())
    return (
        f"{label:<12} {r['rate_hz']:>9.0f} {r['frames_per_s']:>10.0f} "
        f"{r['mb_per_s']:>6.2f} {r['realtime']:>6.3f}{extra}  {use}"
    )


def _search(
    label: str,
    pids: Mapping[str, int],
    capture: Callable[[float], dict[str, Any]],
    rates: Sequence[float],
) -> tuple[dict[str, Any], dict[float, dict[str, float]]]:
    """:func:`highest_sustained` of ``capture``, a row printed per rate; the
    CPU use of ``pids`` (children included) at each rate."""
    cpus: dict[float, dict[str, float]] = {}

    def measure(rate: float) -> dict[str, Any]:
        with CpuUse(pids, children=True) as cpu:
            r = capture(rate)
        cpus[rate] = cpu.use
        print(_row(label, r, cpu.use), flush=True)
        return r

    return highest_sustained(measure, rates), cpus


def _first_failed(search: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first rate above the highest sustained that was tried, if any."""
    failed = [r for r in search["results"] if r["rate_hz"] > search["rate_hz"]]
    return failed[0] if failed else None


def _simulator_alone(args: argparse.Namespace, rates: list[float]) -> Searches:
    """The simulator alone, on a loopback address of its own."""
    host = "127.0.0.9"
    sim = standalone_simulator(host)
    out: Searches = {}
    try:
        for n in args.field_counts:
            out[("sim", n)] = _search(
                f"sim {n:>2}f",
                {"sim": sim.pid},
                lambda rate, n=n: asyncio.run(stream_rate(host, rate, args.seconds, n)),
                rates,
            )
    finally:
        sim.terminate()
        sim.wait(10)
    return out


def _through_ioc(args: argparse.Namespace, rates: list[float]) -> Searches:
    """The simulator behind the real IOC, writing HDF5; with ``--py-spy``, a
    profile of the IOC at the slowest capture of the most fields it could
    not sustain."""
    from panda_flyscan.app.simulated.launcher import simulated_beamline

    out: Searches = {}
    with simulated_beamline(prefix="BENCH") as beamline:
        os.environ.update(beamline.env)
        pids = {p.name: p.pid for p in beamline.processes if p.pid is not None}
        loop = asyncio.new_event_loop()
        with tempfile.TemporaryDirectory() as tmp:

            def capture(rate: float, n: int) -> dict[str, Any]:
                return loop.run_until_complete(
                    ioc_capture_rate(beamline.env, rate, args.seconds, n, Path(tmp))
                )

            for n in args.field_counts:
                out[("ioc", n)] = _search(
                    f"ioc {n:>2}f", pids, lambda rate, n=n: capture(rate, n), rates
                )
            if args.py_spy:
                n = max(args.field_counts)
                search = out[("ioc", n)][0]
                rate = (_first_failed(search) or search)["rate_hz"]
                print(f"\nprofile of the IOC, {n} fields at {rate:.0f} Hz (py-spy):")
                print(
                    profile_process(pids["ioc"], lambda: capture(rate, n), args.py_spy)
                )
        loop.close()
    return out


def _print_sustained(searches: Searches) -> None:
    print("\nhighest sustained (real time >= 0.98, no overrun):")
    for (path, n), (b, _) in searches.items():
        r = b["best"] or {}
        tested = max(x["rate_hz"] for x in b["results"])
        capped = " (the highest rate tried)" if b["rate_hz"] == tested else ""
        print(
            f"  {path} {n:>2} fields: {b['rate_hz']:>9.0f} Hz, "
            f"{r.get('frames_per_s', 0):.0f} frames/s, {r.get('mb_per_s', 0):.2f} MB/s"
            f"{capped}"
        )


def _limit(path: str, cpu: Mapping[str, float]) -> str:
    """Which component limits a capture, from the CPU use where it failed."""
    if cpu.get("sim", cpu.get("panda", 0.0)) > 0.8:
        return "simulator CPU (one asyncio thread)"
    if path == "ioc" and cpu.get("ioc", 0.0) > 0.8:
        return "the IOC's CPU (it parses frames and writes HDF5 in Python)"
    if path == "ioc":
        return "the IOC or HDF5 writing (neither process saturates a core)"
    return "not the simulator's CPU: the Python data client or machine load"


def _print_limits(searches: Searches) -> None:
    print("\nwhat limits each (CPU at the first rate not sustained):")
    for (path, n), (b, cpus) in searches.items():
        failed = _first_failed(b)
        if failed is None:
            print(f"  {path} {n:>2} fields: nothing up to the highest rate tried")
            continue
        cpu = cpus.get(failed["rate_hz"], {})
        use = ", ".join(f"{k} {v:.0%}" for k, v in cpu.items())
        print(f"  {path} {n:>2} fields: {_limit(path, cpu)} [{use}]")


def _arguments() -> argparse.Namespace:
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
    args.field_counts = [int(n) for n in args.fields.split(",")]
    return args


def main() -> None:
    """The command line: see the module's docstring."""
    args = _arguments()
    rates = [float(r) for r in args.rates.split(",")]
    print(HEADER)
    searches = _simulator_alone(args, rates)
    if not args.no_ioc:
        searches |= _through_ioc(args, rates)
    _print_sustained(searches)
    _print_limits(searches)
    slowest = max(args.field_counts)
    top = searches[("sim", slowest)][0].get("rate_hz") or rates[0]
    print("\nprofile of the slowest configuration (simulator):")
    print(profile_simulator(max(top, rates[0]), slowest))


if __name__ == "__main__":
    main()
