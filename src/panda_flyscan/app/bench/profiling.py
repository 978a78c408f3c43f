"""Where the capture time goes: the simulator under cProfile in-process, or
any process (the IOC) sampled by py-spy from outside."""

from __future__ import annotations

import cProfile
import io
import pstats
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panda_flyscan.app.bench.capture_setup import FIELDS, wiring

__all__ = ["profile_process", "profile_simulator"]


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


def profile_process(
    pid: int, run: Callable[[], Any], py_spy: str, top: int = 15
) -> str:
    """Sample ``pid`` (and its children) with py-spy while ``run()`` runs; the
    functions the samples were in (own time) and the packages (inclusive)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        err = _record(pid, run, py_spy, out)
        if not out.exists():
            return f"py-spy wrote nothing: {err.strip()[-300:]}"
        total, own, package = _tally(out.read_text())
    if not total:
        return "py-spy recorded no samples"
    return "\n".join(
        [
            f"{total} samples; own time:",
            *_top(own, total, top),
            "inclusive, by package:",
            *_top(package, total, top),
        ]
    )


def _record(pid: int, run: Callable[[], Any], py_spy: str, out: Path) -> str:
    """py-spy's raw stacks of ``pid`` into ``out`` while ``run()`` runs; its stderr."""
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
    return err


def _tally(raw: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """Samples in py-spy's raw output: the total, by leaf function (own
    time), and by package anywhere on the stack (inclusive)."""
    own: dict[str, int] = {}
    package: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
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
    return total, own, package


def _top(counts: dict[str, int], total: int, top: int) -> list[str]:
    """The ``top`` most sampled, as indented percentage lines."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [f"  {n / total:6.1%}  {name}" for name, n in ranked]


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
