"""The simulated beamline's pure parts: motion profiles, detector timing, frames,
HDF5 layout, and the PandA hooks the devices use. No processes, no sockets."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from sim_ioc.detector.attributes import AttributesError, parse_attributes
from sim_ioc.detector.frames import Stamp, decode, render
from sim_ioc.detector.hdf5 import AttributeSpec, Frame, HDF5Writer
from sim_ioc.detector.timing import Acquisition, Timing, TriggerMode
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.world import TICKS_PER_SECOND, Encoder, World, stopping, trapezoid

MS = TICKS_PER_SECOND // 1000


def _walk(encoder: Encoder, start: int) -> list[tuple[int, int]]:
    """Every (tick, count) the encoder passes through after ``start``, as the
    INENC block sees them (it is also woken where a segment starts; the count
    need not change there)."""
    ts, out, last = start, [], encoder.count(start)
    while (nxt := encoder.next_change(ts)) is not None:
        ts = nxt
        if (count := encoder.count(ts)) != last:
            out.append((ts, count))
            last = count
    return out


# -- trapezoidal motion -----------------------------------------------------------


def test_trapezoid_reaches_speed_cruises_and_lands_exactly() -> None:
    # 10 units at 5 units/s with 50 units/s^2: 0.1 s ramps, 1.9 s cruise.
    segments = trapezoid(100, 0.0, 10.0, speed=5.0, acceleration=50.0)
    axis = World().axis("X")
    axis.set_motion(100, segments)
    end = axis.end_of_motion()
    assert end is not None and end == 100 + round(2.1 * TICKS_PER_SECOND)
    assert axis.position(end) == 10.0
    # Quadratic start: a/2 t^2 after 50 ms; full speed after the ramp.
    assert axis.position(100 + 50 * MS) == pytest.approx(0.5 * 50 * 0.05**2)
    assert axis.velocity(100 + 500 * MS) * TICKS_PER_SECOND == pytest.approx(5.0)
    speeds = [axis.velocity(t) * TICKS_PER_SECOND for t in range(100, end, MS)]
    assert max(speeds) == pytest.approx(5.0)
    assert axis.velocity(end) == 0


def test_short_move_is_a_triangle_and_backwards_works() -> None:
    # 0.01 units cannot reach 5 units/s at 50 units/s^2 (needs 0.5 units).
    segments = trapezoid(0, 2.0, 1.99, speed=5.0, acceleration=50.0)
    assert len(segments) == 3  # accelerate, decelerate, rest
    axis = World().axis("X")
    axis.set_motion(0, segments)
    peak = abs(axis.velocity(segments[1].t0))  # where it turns to decelerate
    assert peak * TICKS_PER_SECOND == pytest.approx(math.sqrt(0.01 * 50), rel=1e-6)
    assert axis.position(segments[-1].t0) == 1.99


def test_encoder_counts_every_step_of_a_trapezoid_exactly_once() -> None:
    axis = World().axis("X")
    encoder = Encoder(axis, resolution=1000)
    axis.set_motion(0, trapezoid(0, 0.0, 2.0, speed=4.0, acceleration=40.0))
    steps = _walk(encoder, 0)
    counts = [c for _, c in steps]
    assert counts == list(range(1, 2001))
    # Each change is reported on the first tick of the new count.
    assert all(encoder.count(t - 1) == c - 1 for t, c in steps)
    axis.set_motion(steps[-1][0], trapezoid(steps[-1][0], 2.0, 1.5, 4.0, 40.0))
    back = [c for _, c in _walk(encoder, steps[-1][0])]
    assert back == list(range(1999, 1499, -1))


def test_constant_velocity_crossings_on_exact_ticks_are_not_late() -> None:
    """A count boundary that falls exactly on a tick changes on that tick."""
    axis = World().axis("X")
    encoder = Encoder(axis, resolution=1000)
    axis.move(0, 1.0, speed=8.0)  # one count every 15625 ticks exactly
    steps = _walk(encoder, 0)
    assert [t for t, _ in steps] == [15625 * n for n in range(1, 1001)]


def test_stopping_decelerates_at_the_given_rate() -> None:
    axis = World().axis("X")
    axis.set_motion(0, trapezoid(0, 0.0, 10.0, speed=2.0, acceleration=20.0))
    ts = TICKS_PER_SECOND  # cruising at 2 units/s
    here = axis.position(ts)
    axis.set_motion(ts, stopping(axis, ts, acceleration=20.0))
    end = axis.end_of_motion()
    assert end is not None and end == ts + round(0.1 * TICKS_PER_SECOND)  # 2 / 20 s
    assert axis.position(end) == pytest.approx(here + 0.5 * 2.0 * 0.1)
    assert stopping(axis, end, 20.0)[0].velocity == 0  # already still


# -- detector timing ------------------------------------------------------------


def test_edge_triggers_while_busy_are_dropped_and_counted() -> None:
    timing = Timing(TriggerMode.EDGE, exposure=10 * MS, readout=1 * MS, frames=3)
    acq = Acquisition(timing, armed=0)
    starts = []
    # Busy until 11 ms + 100 ticks after the first: 5 ms and one tick before
    # the end are dropped, the tick it ends on is taken.
    for t in (100, 5 * MS, 11 * MS + 99, 11 * MS + 100, 30 * MS, 45 * MS):
        exposure = acq.on_level(t, 1)
        acq.on_level(t + 10, 0)
        starts.append(None if exposure is None else exposure.start)
    assert starts == [100, None, None, 11 * MS + 100, 30 * MS, None]
    assert acq.dropped == 2
    assert acq.dropped_at == [5 * MS, 11 * MS + 99]
    # The last came after the 3 frames were taken: not a drop, not a frame.
    assert acq.taken == 3
    ready = acq.read_out(100 * MS)
    assert [e.ready for e in ready] == [11 * MS + 100, 22 * MS + 100, 41 * MS]
    assert acq.finished


def test_a_trigger_on_the_tick_the_readout_ends_is_taken() -> None:
    timing = Timing(TriggerMode.EDGE, exposure=10 * MS, readout=1 * MS, frames=0)
    acq = Acquisition(timing, armed=0)
    assert acq.on_level(0, 1) is not None
    acq.on_level(1, 0)
    assert acq.on_level(11 * MS, 1) is not None
    assert acq.dropped == 0


def test_gate_exposure_lasts_the_gate_and_readout_follows() -> None:
    timing = Timing(TriggerMode.GATE, exposure=0, readout=1 * MS, frames=2)
    acq = Acquisition(timing, armed=0)
    first = acq.on_level(10, 1)
    assert first is not None
    assert acq.read_out(10 * MS) == []  # still open: its end is unknown
    assert acq.next_ready() is None
    acq.on_level(4 * MS, 0)
    assert acq.next_ready() == 5 * MS
    assert acq.on_level(5 * MS - 1, 1) is None  # reading out: dropped
    acq.on_level(5 * MS + 10, 0)
    second = acq.on_level(6 * MS, 1)
    acq.on_level(9 * MS, 0)
    assert second is not None and acq.dropped == 1
    frames = acq.read_out(20 * MS)
    assert [(e.start, e.end, e.ready) for e in frames] == [
        (10, 4 * MS, 5 * MS),
        (6 * MS, 9 * MS, 10 * MS),
    ]
    assert acq.finished


def test_internal_period_is_stretched_to_exposure_plus_readout() -> None:
    timing = Timing(TriggerMode.INTERNAL, 10 * MS, 1 * MS, period=5 * MS, frames=3)
    acq = Acquisition(timing, armed=1000)
    starts = []
    while (nxt := acq.next_internal()) is not None:
        exposure = acq.on_clock(nxt)
        assert exposure is not None
        starts.append(exposure.start)
    assert starts == [1000, 1000 + 11 * MS, 1000 + 22 * MS]
    assert acq.on_level(5, 1) is None  # external edges mean nothing here
    acq.stop()
    assert acq.read_out(10**12) == []  # stopped: pending frames are lost


# -- frames, attributes, files --------------------------------------------------


def test_frames_encode_the_position_and_follow_the_sample() -> None:
    stamp = Stamp(position=1.23456789, tick=123_456_789_012, index=41, exposure=5 * MS)
    image = render(stamp)
    assert image.dtype == np.uint16 and image.shape == (64, 64)
    assert decode(image) == stamp
    assert np.array_equal(render(decode(image)), image)
    # Twice the exposure, twice the signal above background; saturation clips.
    longer = render(dataclasses.replace(stamp, exposure=10 * MS)).astype(int)
    assert longer[32, 32] - 100 == pytest.approx(2 * (int(image[32, 32]) - 100), abs=1)
    assert render(dataclasses.replace(stamp, exposure=TICKS_PER_SECOND)).max() == 65535
    # The sample moved by one grating period looks the same; half a period
    # does not (beyond the stamp pixels).
    moved = render(dataclasses.replace(stamp, position=stamp.position + 0.2))
    half = render(dataclasses.replace(stamp, position=stamp.position + 0.1))
    assert np.abs(moved[1:].astype(int) - image[1:]).max() <= 1
    assert np.abs(half[1:].astype(int) - image[1:]).max() > 500


def test_ndattribute_xml_gives_ophyd_async_dtypes() -> None:
    xml = (
        "<Attributes>"
        '<Attribute name="Exposure" type="PARAM" source="ACQ_TIME" datatype="DOUBLE"/>'
        '<Attribute name="Pos" type="EPICS_PV" source="SIM:M1.RBV" dbrtype="DBR_LONG"/>'
        "</Attributes>"
    )
    attrs = parse_attributes(xml)
    assert [(a.name, a.kind, a.dtype) for a in attrs] == [
        ("Exposure", "PARAM", "<f8"),
        ("Pos", "EPICS_PV", "<i4"),
    ]
    with pytest.raises(AttributesError, match="unknown dbrtype"):
        parse_attributes('<Attributes><Attribute name="x" dbrtype="X"/></Attributes>')


def test_hdf5_layout_and_swmr_readers_see_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "det.h5"
    writer = HDF5Writer(
        path,
        (16, 20),
        "<u2",
        chunk_frames=2,
        attributes=[AttributeSpec("Exposure", "<f8")],
    )
    frames = [
        Frame(render(Stamp(0.1 * i, i, i), (16, 20)), i + 1, 1e9 + i, {"Exposure": 0.5})
        for i in range(5)
    ]
    writer.write(frames[:3])
    # A reader in another thread, as Tiled or a client would be.
    seen: list[tuple[int, ...]] = []

    def read() -> None:
        with h5py.File(path, "r", swmr=True) as f:
            dset = f["/entry/data/data"]
            assert isinstance(dset, h5py.Dataset)
            seen.append(dset.shape)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    writer.write(frames[3:])
    writer.close()
    assert seen == [(3, 16, 20)]
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        assert isinstance(data, h5py.Dataset)
        assert data.chunks == (2, 16, 20)
        assert f["/entry/instrument/detector/data"] == data  # hard link
        assert [decode(image).index for image in data[:]] == [0, 1, 2, 3, 4]
        attrs = f["/entry/instrument/NDAttributes"]
        assert isinstance(attrs, h5py.Group)
        assert list(attrs["NDArrayUniqueId"][:]) == [1, 2, 3, 4, 5]  # type: ignore[index]
        assert list(attrs["Exposure"][:]) == [0.5] * 5  # type: ignore[index]
        assert attrs["Exposure"].chunks == (16384,)  # type: ignore[union-attr]


# -- hooks in the simulated PandA ------------------------------------------------


def test_watch_ttlout_follows_its_source_and_rewiring() -> None:
    panda = SimulatedPanda()
    seen: list[tuple[int, int]] = []
    stop = panda.watch_ttlout(2, lambda ts, level: seen.append((ts, level)))
    panda.put("PULSE1", "WIDTH", "UNITS", "us")
    panda.put("PULSE1", "WIDTH", None, "1")
    panda.put("PULSE1", "TRIG", None, "BITS.OUTA")
    panda.put("PULSE1", "ENABLE", None, "ONE")
    panda.put("TTLOUT2", "VAL", None, "PULSE1.OUT")
    panda.advance(1000)
    panda.put("BITS", "A", None, "1")
    panda.advance(2000)
    assert [level for _, level in seen] == [1, 0]
    rise, fall = (ts for ts, _ in seen)
    assert fall - rise == 125  # 1 us
    # Rewired to a constant: the output follows at once, then nothing more.
    panda.put("TTLOUT2", "VAL", None, "ONE")
    panda.advance(3000)
    assert seen[-1][1] == 1
    stop()
    panda.put("TTLOUT2", "VAL", None, "ZERO")
    panda.advance(4000)
    assert seen[-1][1] == 1  # no longer watching


def test_call_at_runs_in_tick_order_with_the_blocks() -> None:
    panda = SimulatedPanda()
    panda.advance(10)
    calls: list[int] = []

    def again(ts: int) -> None:
        calls.append(ts)
        if len(calls) < 3:
            panda.engine.call_at(ts + 100, again)

    panda.engine.call_at(500, again)
    panda.advance(499)
    assert calls == []
    panda.advance(10_000)
    assert calls == [500, 600, 700]
