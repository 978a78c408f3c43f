"""Runs written by the durable writer read back equal to what was written.

Against both catalogs (SQLite and, where available, PostgreSQL): internal
event data compared with the Event documents, external HDF5 data (a detector
writing images, a PandA-like writer flyscanning) compared with h5py reading
the very same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from ophyd.sim import det, motor  # pyright: ignore[reportAttributeAccessIssue]
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
from ophyd_async.sim import SimBlobDetector
from storage_devices import PANDA_DATASETS, SimPandaHDF, fly_plan, panda_row
from storage_helpers import DocCollector

from panda_flyscan.storage import (
    external_assets,
    pending_journals,
    read_field,
    read_run,
    read_stream,
    stream_dataframe,
    stream_names,
)


def test_internal_data_equals_events(backend, RE, make_writer):
    writer = make_writer(backend)
    collector = DocCollector()
    RE.subscribe(collector)
    (uid,) = RE(bp.scan([det], motor, -1.5, 1.5, 13, md={"sample": "Si", "n": 13}))
    client = backend.client()

    run = client[uid]
    assert run.metadata["start"] == json.loads(json.dumps(collector.of("start")[0]))
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.metadata["stop"]["num_events"] == {"primary": 13}
    assert stream_names(client, uid) == ["primary"]

    written = collector.event_values("primary")
    dataset = read_stream(client, uid, "primary")
    assert set(written) <= set(dataset.data_vars)
    for key, values in written.items():
        np.testing.assert_array_equal(dataset[key].values, values, err_msg=key)
    # The values vary along the scan: the comparison above is not vacuous.
    assert len(np.unique(written["det"])) > 5

    frame = stream_dataframe(client, uid)
    np.testing.assert_array_equal(frame["motor"].to_numpy(), written["motor"])
    np.testing.assert_array_equal(
        read_field(client, uid, "primary", "det"), written["det"]
    )
    assert writer.stats.runs_written == 1 and writer.stats.runs_pending == 0


def test_detector_images_equal_hdf5_files(backend, RE, make_writer):
    make_writer(backend)
    with init_devices():
        blob = SimBlobDetector(
            StaticPathProvider(UUIDFilenameProvider(), backend.external_dir),
            name="blob",
        )
    blob.pattern_generator.set_x(1.0)
    collector = DocCollector()
    RE.subscribe(collector)
    (uid,) = RE(bp.count([blob], 4))
    client = backend.client()

    dataset = read_stream(client, uid)
    (asset,) = external_assets(client, uid, "primary", "blob")
    assert asset.path.parent == backend.external_dir
    assert asset.dataset == "/entry/data/data"
    with h5py.File(asset.path, "r", swmr=True) as handle:
        images = np.asarray(handle["/entry/data/data"])
        sums = np.asarray(handle["/entry/sum"])
    assert images.shape == (4, 240, 320) and images.any()
    # ophyd-async describes one collection per event: shape (1, 240, 320).
    (descriptor,) = collector.of("descriptor")
    per_event = tuple(descriptor["data_keys"]["blob"]["shape"])
    assert per_event == (1, 240, 320)
    assert dataset["blob"].shape == (4, *per_event)
    np.testing.assert_array_equal(dataset["blob"].values.reshape(images.shape), images)
    np.testing.assert_array_equal(dataset["blob-sum"].values.reshape(sums.shape), sums)
    third = read_field(client, uid, "primary", "blob", 2)
    np.testing.assert_array_equal(third.reshape(images[2].shape), images[2])


def test_panda_flyscan_equals_hdf5_file(backend, RE, make_writer):
    make_writer(backend)
    with init_devices():
        panda = SimPandaHDF(
            backend.external_dir, filename=f"panda-{backend.name}", name="panda"
        )
    collector = DocCollector()
    RE.subscribe(collector)
    (uid,) = RE(fly_plan(panda, 120, period=0.002))
    assert collector.of("stream_datum") and not collector.of("event")
    client = backend.client()

    frame = stream_dataframe(client, uid)
    assert len(frame) == 120
    with h5py.File(panda.file_path, "r", swmr=True) as handle:
        for name in PANDA_DATASETS:
            from_file = np.asarray(handle[f"/{name}"])
            np.testing.assert_array_equal(
                frame[name].to_numpy(), from_file, err_msg=name
            )
            expected = [panda_row(i)[name] for i in range(120)]
            np.testing.assert_array_equal(from_file, expected, err_msg=name)
    assert {a.path for a in external_assets(client, uid, "primary", "counter1")} == {
        panda.file_path
    }
    assert set(read_run(client, uid)) == {"primary"}


def test_journals_filed_once_written(backend, RE, make_writer, tmp_path: Path):
    writer = make_writer(backend, journal_dir=tmp_path / "j")
    uids = [RE(bp.count([det], 3))[0] for _ in range(2)]
    assert pending_journals(tmp_path / "j") == []
    written = sorted(p.stem for p in (tmp_path / "j" / "written").glob("*.jsonl"))
    assert written == sorted(uids)
    lines = (tmp_path / "j" / "written" / f"{uids[0]}.jsonl").read_text().splitlines()
    names = [json.loads(line)["name"] for line in lines]
    assert names == ["start", "descriptor", "event", "event", "event", "stop"]
    assert writer.stats.documents == 12


def test_numpy_values_in_documents(backend, RE, make_writer):
    make_writer(backend)
    md = {
        "roi": np.arange(4, dtype=np.int32),
        "gain": np.float32(1.5),
        "idx": np.int64(7),
    }
    (uid,) = RE(bp.count([det], 2, md=md))
    start = backend.client()[uid].metadata["start"]
    assert start["roi"] == [0, 1, 2, 3]
    assert start["gain"] == pytest.approx(1.5)
    assert start["idx"] == 7
