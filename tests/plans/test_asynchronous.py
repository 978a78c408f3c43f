"""async_scan end to end: the PandA samples the axis on its clock while the
axis flies a known profile; co-binning at frames of an independent clock
recovers that profile from what Tiled serves."""

from __future__ import annotations

import numpy as np
import pytest
from plan_helpers import assert_tiled_matches_file, panda_idle

from panda_flyscan.plans import CLOCK_STREAM, async_scan, cobin_run
from panda_flyscan.storage import read_stream

pytestmark = pytest.mark.ioc

COUNT = 0.001  # mm per encoder count


def test_cobinning_recovers_a_known_motion(flyscan, sim_axis) -> None:
    x = sim_axis
    start, stop, velocity, sample_period = 0.0, 2.0, 4.0, 1e-3
    (uid,) = flyscan.RE(
        async_scan(
            flyscan.beamline.panda,
            motor=x,
            start=start,
            stop=stop,
            velocity=velocity,
            sample_period=sample_period,
        )
    )
    data = assert_tiled_matches_file(flyscan, uid, ["x", "trigger_time"])
    duration = flyscan.of("start")[0]["plan_args"]["duration"]
    assert len(data["x"]) == int(duration / sample_period + 1e-9)
    np.testing.assert_allclose(np.diff(data["trigger_time"]), sample_period, atol=1e-12)

    # The truth: the simulator moved the axis at constant speed from the start
    # of the run-up (the *SIM.MOVE sent at a known host time) to the end of
    # the run-down. SimAxis has no acceleration, so the profile is exact.
    move = x.last_move
    t_move = sum(move.sent_between) / 2
    lo, hi = sorted((move.start_counts, move.target_counts))

    def truth(t: np.ndarray) -> np.ndarray:
        counts = move.start_counts + np.sign(move.target_counts - move.start_counts) * (
            move.counts_per_second * (t - t_move)
        )
        return np.clip(counts, lo, hi) * COUNT

    clock = read_stream(flyscan.client(), uid, CLOCK_STREAM)
    t0 = float(clock["panda_start_time"][0])
    anchor = float(clock["panda_start_uncertainty"][0])
    # A free-running detector on its own clock: 47.3 Hz, started 3.1 ms after
    # the PandA, frames until the end of sampling.
    frame_times = t0 + 3.1e-3 + np.arange(int((duration - 0.01) * 47.3)) / 47.3
    binned = cobin_run(flyscan.client(), uid, frame_times)
    positions = binned["x"].to_numpy()
    assert not np.isnan(positions).any()
    # Host clocks of the two events are known to within their brackets; the
    # position error is the speed times that, plus one count of quantisation.
    slack = (anchor + (move.sent_between[1] - move.sent_between[0]) / 2) * velocity
    np.testing.assert_allclose(positions, truth(frame_times), atol=slack + COUNT)
    # Independent of the clock anchor: the plateaus and the speed.
    before = frame_times < t_move - 0.01
    after = truth(frame_times) == hi * COUNT
    moving = (truth(frame_times) > lo * COUNT + 0.02) & (
        truth(frame_times) < hi * COUNT - 0.02
    )
    assert before.sum() >= 2 and after.sum() >= 2 and moving.sum() >= 10
    np.testing.assert_allclose(positions[before], lo * COUNT, atol=COUNT)
    np.testing.assert_allclose(positions[after], hi * COUNT, atol=COUNT)
    slope = np.polyfit(frame_times[moving], positions[moving], 1)[0]
    assert slope == pytest.approx(velocity, rel=1e-3)
    # Mean over a 5 ms exposure equals the mid-exposure position on a line.
    mean = cobin_run(flyscan.client(), uid, frame_times, exposure=5e-3)["x"]
    mid = cobin_run(flyscan.client(), uid, frame_times + 2.5e-3)["x"]
    np.testing.assert_allclose(mean[moving], mid[moving], atol=COUNT)
    assert flyscan.of("stop")[0]["exit_status"] == "success"
    assert panda_idle(flyscan) == (False, False)


def test_free_running_detector_gets_a_stream_of_its_own(flyscan) -> None:
    """A StandardDetector free-running on its own (software) clock joins: its
    frames go to a stream named after it, beside the PandA's samples."""
    from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider
    from ophyd_async.sim import SimBlobDetector

    blob = SimBlobDetector(
        StaticPathProvider(UUIDFilenameProvider(), flyscan.data_dir), name="blob"
    )
    flyscan.run(blob.connect())
    duration, frame_period = 0.6, 0.05
    (uid,) = flyscan.RE(
        async_scan(
            flyscan.beamline.panda,
            duration,
            detectors=[blob],
            frame_period=frame_period,
            exposure=0.01,
        )
    )
    client = flyscan.client()
    samples = read_stream(client, uid, "primary")
    assert len(samples["trigger_time"]) == 600
    frames = read_stream(client, uid, "blob")
    assert frames["blob"].shape[0] == 12  # duration / frame_period
    assert frames["blob"].shape[-2:] == (240, 320)
    stop = flyscan.of("stop")[0]
    assert stop["num_events"] == {"primary": 600, "blob": 12, CLOCK_STREAM: 1}
