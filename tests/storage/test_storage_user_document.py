"""The user's document (seed tutorial), as written: only host/port/paths changed.

The tutorial assumes ``tiled serve catalog --temp --api-key=secret -r
/tmp/tiled_data``; here the package's own service plays that part (same
key, the data directory readable), on a free port instead of 8000 and with a
temporary directory instead of /tmp/tiled_data. Values read back through
Tiled are compared with the documents and with the files on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from storage_helpers import DocCollector

from panda_flyscan.storage import DEFAULT_API_KEY, TiledService, subscribe_tiled_writer


@pytest.fixture(scope="module")
def tutorial_server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("tutorial")
    tiled_data = base / "tiled_data"  # the tutorial's /tmp/tiled_data
    tiled_data.mkdir()
    with TiledService(base / "catalog", readable=[tiled_data]) as service:
        assert service.api_key == DEFAULT_API_KEY == "secret"
        yield service, tiled_data


def _npy_frames(collector: DocCollector, directory: Path) -> np.ndarray:
    """The images the ophyd.sim ``img`` detector saved, from its Resource/Datums."""
    (resource,) = collector.of("resource")
    by_datum = {
        d["datum_id"]: d["datum_kwargs"]["index"] for d in collector.of("datum")
    }
    frames = []
    for event in sorted(collector.of("event"), key=lambda e: e["seq_num"]):
        index = by_datum[event["data"]["img"]]
        frames.append(np.load(directory / f"{resource['resource_path']}_{index}.npy"))
    return np.stack(frames)


def test_user_document_as_written(tutorial_server):
    service, tiled_data = tutorial_server
    host_port = service.uri.removesuffix("/api/v1")  # was "http://localhost:8000"

    # ---- the document, verbatim except host/port/paths ----
    from bluesky import RunEngine
    from bluesky.callbacks.tiled_writer import TiledWriter
    from tiled.client import from_uri

    RE = RunEngine()
    tiled_client = from_uri(host_port, api_key="secret")
    tw = TiledWriter(tiled_client)
    RE.subscribe(tw)
    tiled_client  # noqa: B018  # pyright: ignore[reportUnusedExpression]

    from pathlib import Path

    import bluesky.plans as bp
    from ophyd.sim import det, hw  # pyright: ignore[reportAttributeAccessIssue]

    # Collect and write "internal" (Event) data
    collector = DocCollector()
    RE.subscribe(collector)  # (test addition: keep what was emitted)
    (uid,) = RE(bp.count([det], 10))  # pyright: ignore[reportGeneralTypeIssues]
    print(f"Finished collecting data for Bluesky run with uid = {uid}")
    tiled_client[uid]
    # Read the acquired data as an xarray dataset
    with pytest.warns(DeprecationWarning, match="streams"):
        internal = tiled_client[uid]["streams/primary"].read()

    # ---- checks ----
    assert internal.sizes["time"] == 10
    np.testing.assert_array_equal(
        internal["det"].values, collector.event_values()["det"]
    )
    np.testing.assert_array_equal(
        internal["time"].values, [e["time"] for e in collector.of("event")]
    )
    xr_new = tiled_client[uid]["primary"].read()  # the current spelling
    np.testing.assert_array_equal(xr_new["det"].values, internal["det"].values)

    # ---- the document, continued ----
    # Collect and write external data
    Path(tiled_data).mkdir(exist_ok=True)
    collector.docs.clear()
    (uid,) = RE(bp.count([hw(save_path=str(tiled_data)).img], 10))  # pyright: ignore[reportGeneralTypeIssues]
    print(f"Finished collecting data for Bluesky run with uid = {uid}")
    with pytest.warns(DeprecationWarning, match="streams"):
        external = tiled_client[uid]["streams/primary"].read()

    # ---- checks: equal to the files the detector wrote ----
    frames = _npy_frames(collector, tiled_data)
    assert frames.shape == (10, 10, 10)
    np.testing.assert_array_equal(external["img"].values, frames)


def test_user_document_with_the_package(tutorial_server, tmp_path: Path):
    """The docs page version: the durable writer, current spelling."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det, hw  # pyright: ignore[reportAttributeAccessIssue]

    service, tiled_data = tutorial_server
    RE = RunEngine()
    writer = subscribe_tiled_writer(
        RE,
        service.uri,
        "secret",
        external_dirs=[tiled_data],
        journal_dir=tmp_path / "j",
    )
    collector = DocCollector()
    RE.subscribe(collector)
    tiled_client = service.client()
    try:
        (uid,) = RE(bp.count([det], 10))  # pyright: ignore[reportGeneralTypeIssues]
        internal = tiled_client[uid]["primary"].read()
        np.testing.assert_array_equal(
            internal["det"].values, collector.event_values()["det"]
        )

        collector.docs.clear()
        (uid,) = RE(bp.count([hw(save_path=str(tiled_data)).img], 10))  # pyright: ignore[reportGeneralTypeIssues]
        external = tiled_client[uid]["primary"].read()
        np.testing.assert_array_equal(
            external["img"].values, _npy_frames(collector, tiled_data)
        )
        # The old spelling still works.
        with pytest.warns(DeprecationWarning):
            old = tiled_client[uid]["streams/primary"].read()
        np.testing.assert_array_equal(old["img"].values, external["img"].values)
    finally:
        writer.close()
