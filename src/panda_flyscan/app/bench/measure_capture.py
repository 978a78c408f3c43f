"""Figure 3, capture throughput: the highest PandA capture rate the
simulator + real IOC + HDF5 chain sustains without overrun, by the number of
captured fields (each capture: :func:`~.ioc_capture.ioc_capture_rate`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench.capture_setup import FIELDS, highest_sustained
from panda_flyscan.app.bench.cpu import CpuUse
from panda_flyscan.app.bench.ioc_capture import ioc_capture_rate
from panda_flyscan.app.bench.stats import Figure, pairwise_ratio

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["MIN_CAPTURE_RATE", "capture"]

#: The lowest capture rate the search goes down to (Hz).
MIN_CAPTURE_RATE = 10_000


def _capture_problem(result: dict[str, Any], asked: float) -> str:
    """Why a capture result does not count as sustained though it may say so:
    the IOC's file must hold at least the frames asked for (it may hold more:
    the clock runs until the PandA is disarmed after the capture)."""
    in_file = result.get("frames_in_file")
    if in_file is not None and in_file < 0.98 * asked:
        return f"only {in_file} of {asked:.0f} frames asked for reached the file"
    return ""


class _RateSearch:
    """Captures through the shared beamline's IOC, and the search over rates."""

    def __init__(self, s: Suite) -> None:
        self.s = s
        self.env = s.ctx.sim.env
        self.pids = {p.name: p.pid for p in s.ctx.sim.processes if p.pid is not None}

    def measure(self, rate_hz: float, n_fields: int, where: Path) -> dict[str, Any]:
        """One capture at ``rate_hz``, with the CPU (in cores) of the simulator
        and the IOC while it ran."""
        b = self.s.budget
        with CpuUse(self.pids) as cpu:
            result = dict(
                self.s.ctx.in_loop(
                    ioc_capture_rate(
                        self.env, rate_hz, b.capture_seconds, n_fields, where
                    ),
                    timeout=b.capture_seconds * 10 + 60,
                )
            )
        result["cpu"] = {name: round(use, 2) for name, use in cpu.use.items()}
        problem = _capture_problem(result, rate_hz * b.capture_seconds)
        if problem:
            # Not sustained, whatever the rate says: the file is the proof.
            result["realtime"] = 0.0
            result["problem"] = problem
        self.s.log(
            f"  {n_fields} fields at {rate_hz:g} Hz: {result['frames_per_s']:.0f} "
            f"frames/s, real-time {result['realtime']:.3f}, "
            f"overrun {result.get('overrun')}, "
            f"{result.get('frames_in_file')} frames in the file, CPU "
            + ", ".join(f"{k} {v:.0%}" for k, v in result["cpu"].items())
            + (f" ({problem})" if problem else "")
        )
        return result

    def search(self, n_fields: int, where: Path) -> dict[str, Any]:
        """The grid upward; if not even its lowest rate holds, downward."""
        rates = list(self.s.budget.capture_rates)
        out = self._sustained(rates, n_fields, where)
        lower = min(rates) / 4
        while out["best"] is None and lower >= MIN_CAPTURE_RATE:
            self.s.log(f"  {n_fields} fields: trying below the grid, {lower:g} Hz")
            more = self._sustained([lower], n_fields, where)
            out = {**more, "results": out["results"] + more["results"]}
            lower /= 4
        return out

    def _sustained(
        self, rates: list[float], n_fields: int, where: Path
    ) -> dict[str, Any]:
        return highest_sustained(
            lambda rate: self.measure(rate, n_fields, where), rates, threshold=0.98
        )


def _figures(s: Suite, n_fields: int) -> tuple[Figure, Figure]:
    """The frames/s and MB/s figures of ``n_fields`` captured fields."""
    return (
        s.figure(
            f"capture.{n_fields}.frames",
            "capture",
            f"{n_fields} captured fields",
            "frames/s",
            note="highest rate of the grid with real-time >= 0.98 and no "
            "overrun; frames counted in the IOC's HDF5 file",
            details={"rates_tried": list(s.budget.capture_rates), "runs": []},
        ),
        s.figure(
            f"capture.{n_fields}.mb",
            "capture",
            f"{n_fields} captured fields",
            "MB/s",
        ),
    )


def _log_best(
    s: Suite, n_fields: int, best: dict[str, Any], out: dict[str, Any]
) -> None:
    """Log the rate sustained and the lowest one above it that was not."""
    failed = [x["rate_hz"] for x in out["results"] if x["rate_hz"] > best["rate_hz"]]
    s.log(
        f"{n_fields} fields: {best['frames_per_s']:.0f} frames/s, "
        f"{best['mb_per_s']:.2f} MB/s sustained (at {best['rate_hz']:g} Hz"
        + (f"; {min(failed):g} Hz was not)" if failed else "; the highest tried)")
    )


def capture(s: Suite) -> None:
    """Highest sustained capture rate through the IOC into HDF5, by field count;
    the field counts alternate within each repeat (side by side)."""
    b = s.budget
    s.ctx.beamline  # noqa: B018 - the loop's CA/PVA contexts point at the beamline
    rate_search = _RateSearch(s)
    data_dir = s.ctx.work_dir / "capture"
    figs: dict[int, tuple[Figure, Figure]] = {}
    for n_fields in b.capture_fields:
        if n_fields not in FIELDS:
            raise ValueError(f"capture_setup.FIELDS has no {n_fields}-field set")
        figs[n_fields] = _figures(s, n_fields)
    for r in range(b.capture_repeats):
        for n_fields, (rate_fig, mb_fig) in figs.items():
            # A directory per run: the IOC writes bench_<fields>_<rate>.h5.
            where = data_dir / f"{n_fields}-{r}"
            where.mkdir(parents=True)
            out = rate_search.search(n_fields, where)
            best = out["best"]
            rate_fig.details["runs"].append(out["results"])
            if best is None:
                raise RuntimeError(
                    f"{n_fields} fields: no rate from {MIN_CAPTURE_RATE:g} to "
                    f"{max(b.capture_rates):g} Hz was sustained without overrun"
                )
            rate_fig.add(best["frames_per_s"])
            mb_fig.add(best["mb_per_s"])
            _log_best(s, n_fields, best, out)
    if 4 in figs and 16 in figs:
        ratio = s.figure(
            "capture.ratio",
            "capture",
            "16 / 4 fields, frames/s sustained",
            ratio=True,
        )
        ratio.samples = pairwise_ratio(figs[16][0].samples, figs[4][0].samples)
