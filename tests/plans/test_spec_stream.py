"""spec_scan with a streamed SEQ table (``control=PandaControl``): paths far
beyond one 4096-line table, an underrun provoked on purpose, and pauses and
resumes at random instants; on the simulated beamline, the real IOC and a
real Tiled server, compared with what the spec asked for."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from ophyd_async.core import wait_for_value
from plan_helpers import assert_tiled_matches_file, panda_idle
from scanspec.core import Path as ScanPath
from scanspec.specs import Fly, Line, Spec

from panda_flyscan.devices import table_stream
from panda_flyscan.devices.table_stream import PandaControl
from panda_flyscan.plans import spec_scan
from panda_flyscan.plans.errors import TableRanDry
from sim_ioc.detector import decode

pytestmark = pytest.mark.ioc

COUNT = 0.001  # mm: one encoder count on every simulated axis


@pytest.fixture
def control(beamline: Any, flyscan: Any) -> Iterator[PandaControl]:
    ctl = PandaControl(beamline.panda_host)
    yield ctl
    flyscan.run(ctl.close())


def _midpoints(spec: Spec[Any]) -> dict[str, np.ndarray]:
    frames = ScanPath(spec.calculate()).consume()
    return {a.name: np.asarray(frames.midpoints[a]) for a in frames.axes()}


def _det_frames(env: Any) -> np.ndarray:
    info = env.beamline.path_provider.last["det"]
    path = Path(info.directory_path) / f"{info.filename}.h5"
    with h5py.File(path, "r", swmr=True) as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        return data[()]


def _check_rows(env: Any, uid: str, spec: Spec[Any]) -> dict[str, np.ndarray]:
    """Every planned frame once, at its planned place, in Tiled = the file."""
    rows = assert_tiled_matches_file(env, uid, ["x", "y", "trigger_time"])
    mid = _midpoints(spec)
    assert len(rows["x"]) == len(mid["x"])
    np.testing.assert_allclose(rows["x"], mid["x"], rtol=0, atol=COUNT + 1e-9)
    np.testing.assert_allclose(rows["y"], mid["y"], rtol=0, atol=COUNT + 1e-9)
    t = rows["trigger_time"]
    assert len(np.unique(t)) == len(t)
    [stop] = env.of("stop")
    assert stop["exit_status"] == "success", stop
    assert stop["num_events"] == {"primary": len(mid["x"])}
    return rows


def test_path_of_many_tables_streamed(flyscan: Any, control: PandaControl) -> None:
    """6,000 frames, 12,000+ table lines (three tables' worth), each frame
    triggered at its own position."""
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(0.0005 @ (Line(y, 0, 0.2, 3) * ~Line(x, 0, 4, 2000)))
    (uid,) = flyscan.RE(spec_scan(bl.panda, spec, control=control))
    _check_rows(flyscan, uid, spec)
    [start] = flyscan.of("start")
    assert start["panda_flyscan"]["seq_table"] == "streamed"
    assert start["panda_flyscan"]["seq_rows"] == 3 * (1 + 2 * 2000)
    assert panda_idle(flyscan) == (False, False)
    # Released: a streamed table refuses the next scan's fixed table.
    assert flyscan.run(control.get("SEQ1.TABLE.MODE")) == "INIT"


def test_underrun_fails_naming_the_frame(
    flyscan: Any, control: PandaControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feeder too slow for the SEQ: the firmware's underrun ends the scan
    with TableRanDry naming the first frame not triggered; the run keeps
    exactly the frames before it."""
    bl = flyscan.beamline
    x = bl.motor("x")
    run = table_stream.TableStream.run

    async def late(self: table_stream.TableStream) -> None:
        # Everything after the preload arrives once the table has run dry
        # (polled: the PandA announces nothing).
        for _ in range(600):
            if await self.control.get("SEQ1.HEALTH") == "DMA underrun":
                break
            await asyncio.sleep(0.05)
        await run(self)

    monkeypatch.setattr(table_stream.TableStream, "run", late)
    spec = Fly(0.0005 @ Line(x, 0, 19.999, 20_000))
    with pytest.raises(TableRanDry) as err:
        flyscan.RE(spec_scan(bl.panda, spec, control=control))
    frame = err.value.frame
    # The preload (LOW_WATER = 32,768 lines: the guard, 16,383 frames and
    # the next one's gate) ran, no more.
    assert table_stream.LOW_WATER == 32_768
    assert frame == 16_383
    assert f"frame {frame}" in str(err.value)
    assert "DMA underrun" in str(err.value)
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "fail"
    assert stop["num_events"] == {"primary": frame}
    assert panda_idle(flyscan) == (False, False)
    assert flyscan.run(control.get("SEQ1.TABLE.MODE")) == "INIT"


def test_ten_pauses_of_a_snake_with_a_detector(
    flyscan: Any, control: PandaControl
) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    det = bl.detectors["det"]
    spec = Fly(0.005 @ (Line(y, 0, 0.5, 6) * ~Line(x, 0, 2, 200)))
    RE = flyscan.RE
    rng = random.Random(13)
    armed = threading.Event()
    RE.msg_hook = lambda msg: armed.set() if msg.command == "checkpoint" else None
    pauses = 0
    # What a progress bar is told while the RunEngine waits: per status
    # watched, its (frames, of) updates.
    progress: dict[int, list[tuple[int, int]]] = {}

    def watch(statuses: Any) -> None:
        for status in statuses or ():
            if hasattr(status, "watch") and id(status) not in progress:
                updates = progress[id(status)] = []

                def frames(
                    name: str | None = None,
                    updates: list[tuple[int, int]] = updates,
                    **update: Any,
                ) -> None:
                    if name == "frames":
                        updates.append((update["current"], update["target"]))

                status.watch(frames)

    previous_hook, RE.waiting_hook = RE.waiting_hook, watch

    def pause_soon() -> None:
        delay = rng.uniform(0.2, 0.7)

        def fire() -> None:
            if armed.wait(30) and RE.state == "running":
                RE.request_pause()

        threading.Timer(delay, fire).start()

    try:
        pause_soon()
        with contextlib.suppress(RunEngineInterrupted):
            RE(spec_scan(bl.panda, spec, detectors=[det], control=control))
        while RE.state == "paused":
            pauses += 1
            if pauses < 10:
                pause_soon()
            with contextlib.suppress(RunEngineInterrupted):
                RE.resume()
    finally:
        RE.msg_hook = None
        RE.waiting_hook = previous_hook
    assert pauses == 10
    # Each bar counts the scan's frames (of 1200), never back: the last
    # line's starts near 1000 (PCAP's count may lag the motor's readback a
    # little), where a count of the line's own frames would start at 0.
    bars = [updates for updates in progress.values() if updates]
    assert bars
    for updates in bars:
        counts = [current for current, _ in updates]
        assert counts == sorted(counts) and counts[-1] <= 1200, counts
        assert {target for _, target in updates} == {1200}
    assert max(bar[-1][0] for bar in bars) >= 1000
    assert any(bar[0][0] >= 900 for bar in bars)
    [start] = flyscan.of("start")
    [stop] = flyscan.of("stop")
    assert stop["reason"].startswith("paused 10 times, ")
    assert stop["reason"].endswith("; 6 segments")
    rows = _check_rows(flyscan, start["uid"], spec)
    images = _det_frames(flyscan)
    assert len(images) == len(rows["x"]) == 1200
    stamps = [decode(frame) for frame in images]
    assert [s.index for s in stamps] == list(range(1200))
    # Frame i was taken where row i was (the stamp: the trigger's position).
    direction = np.repeat([1, -1] * 3, 200)
    mid = _midpoints(spec)
    np.testing.assert_allclose(
        [s.position for s in stamps],
        mid["x"] - direction * 0.0025,
        rtol=0,
        atol=2 * COUNT,
    )
    assert panda_idle(flyscan) == (False, False)


def test_abort_while_paused_closes_the_run(flyscan: Any, control: PandaControl) -> None:
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(0.005 @ (Line(y, 0, 0.2, 3) * ~Line(x, 0, 2, 200)))
    RE = flyscan.RE
    armed = threading.Event()
    RE.msg_hook = lambda msg: armed.set() if msg.command == "checkpoint" else None

    captured = bl.panda.data.num_captured

    def fire() -> None:
        # Mid-line: once a hundred rows are in.
        if armed.wait(30):
            flyscan.run(wait_for_value(captured, lambda n: n >= 100, timeout=30))
            RE.request_pause()

    threading.Thread(target=fire, daemon=True).start()
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(spec_scan(bl.panda, spec, control=control))
        assert RE.state == "paused"
        RE.abort("test")
    finally:
        RE.msg_hook = None
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "abort"
    rows = assert_tiled_matches_file(flyscan, stop["run_start"], ["x", "trigger_time"])
    assert 0 < len(rows["x"]) < 600
    assert stop["num_events"] == {"primary": len(rows["x"])}
    assert panda_idle(flyscan) == (False, False)


def test_beam_dump_mid_line_suspends_and_the_scan_resumes(
    beamline: Any, flyscan: Any, control: PandaControl
) -> None:
    """bluesky's stock SuspendFloor on the simulated ring current: the beam
    drops mid-line, the flyscan suspends (triggers stop at a frame boundary,
    the motor stops), the beam comes back and the scan resumes: every
    planned frame once, at its place.

    The suspender watches an ophyd ``Signal`` that a CA monitor of the PV
    (ophyd-async's, over libca) keeps current, rather than an ophyd
    ``EpicsSignalRO``: caproto's client, which ophyd uses, hands a later
    subscriber to the same PV (tests/sim_beamline/test_ring_current.py,
    whose subject that is) the last value it held, which this test's dump
    could leave stale."""
    from bluesky.suspenders import SuspendFloor
    from ophyd import Signal
    from ophyd_async.core import observe_value
    from ophyd_async.epics.core import epics_signal_rw

    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    det = bl.detectors["det"]
    spec = Fly(0.005 @ (Line(y, 0, 0.2, 3) * ~Line(x, 0, 2, 200)))
    pv = epics_signal_rw(float, f"ca://{beamline.prefix}:RING:CURRENT", name="ring")
    flyscan.run(pv.connect(timeout=30))
    current = Signal(name="ring_current", value=flyscan.run(pv.get_value()))
    assert current.get() == 300.0

    async def mirror() -> None:
        async for value in observe_value(pv):
            current.put(value)

    RE = flyscan.RE
    mirroring = asyncio.run_coroutine_threadsafe(mirror(), RE.loop)
    suspender = SuspendFloor(current, suspend_thresh=50, resume_thresh=200, sleep=0.5)
    suspended = threading.Event()
    RE.msg_hook = lambda msg: (
        suspended.set() if msg.command == "_start_suspender" else None
    )
    captured = bl.panda.data.num_captured
    rows_at_trip: list[int] = []

    def dump_and_refill() -> None:
        # Mid-way through the second line.
        flyscan.run(wait_for_value(captured, lambda n: n >= 300, timeout=60))
        flyscan.set(pv, 0.0)
        if suspended.wait(30):
            rows_at_trip.append(flyscan.run(captured.get_value()))
        flyscan.set(pv, 300.0)

    RE.install_suspender(suspender)
    tripper = threading.Thread(target=dump_and_refill, daemon=True)
    try:
        tripper.start()
        (uid,) = RE(spec_scan(bl.panda, spec, detectors=[det], control=control))
        tripper.join(60)
    finally:
        RE.remove_suspender(suspender)
        RE.msg_hook = None
        flyscan.set(pv, 300.0)
        mirroring.cancel()
    assert rows_at_trip and 300 <= rows_at_trip[0] < 600
    rows = _check_rows(flyscan, uid, spec)
    images = _det_frames(flyscan)
    assert len(images) == len(rows["x"]) == 600
    assert [decode(f).index for f in images] == list(range(600))


def test_pause_while_arming_cannot_resume_and_says_so(
    flyscan: Any, control: PandaControl
) -> None:
    """A pause before the first segment (while the PandA and the SEQ are
    being armed) cannot be replayed: resume refuses with what to do, abort
    closes the run."""
    bl = flyscan.beamline
    x = bl.motor("x")
    spec = Fly(0.005 @ Line(x, 0, 1, 100))
    RE = flyscan.RE
    arming = threading.Event()
    RE.msg_hook = lambda msg: arming.set() if msg.command == "prepare" else None

    def fire() -> None:
        if arming.wait(30):
            RE.request_pause()

    threading.Thread(target=fire, daemon=True).start()
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(spec_scan(bl.panda, spec, control=control))
        assert RE.state == "paused"
        with pytest.raises(RuntimeError, match="cannot resume from there"):
            RE.resume()
        assert RE.state == "paused"
        RE.abort("paused while arming")
    finally:
        RE.msg_hook = None
    [stop] = flyscan.of("stop")
    assert stop["exit_status"] == "abort"
    assert panda_idle(flyscan) == (False, False)


def test_hundred_thousand_distinct_frames(flyscan: Any, control: PandaControl) -> None:
    """1e5 frames at 10 kHz, each triggered at its own position (200,010
    streamed table lines, 50 tables' worth): every frame in the file and in
    Tiled, at the path's midpoints to one count."""
    bl = flyscan.beamline
    x, y = bl.motor("x"), bl.motor("y")
    spec = Fly(1e-4 @ (Line(y, 0, 0.09, 10) * ~Line(x, 0, 9.999, 10_000)))
    (uid,) = flyscan.RE(spec_scan(bl.panda, spec, control=control))
    rows = _check_rows(flyscan, uid, spec)
    assert len(rows["x"]) == 100_000
