"""Unit tests of our own logic (fakes only where no server is involved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import httpx
import numpy as np
import pytest
from bluesky_tiled_plugins.writing._json_writer import JSONLinesWriter
from event_model import compose_run
from ophyd.sim import det  # pyright: ignore[reportAttributeAccessIssue]

from panda_flyscan.storage import (
    DurableTiledWriter,
    ReplayError,
    ReplayStatus,
    pending_journals,
    replay,
)
from panda_flyscan.storage.fail_fast import FailFastTransport, RequestAborted
from panda_flyscan.storage.journal import JournalFile, decode, encode, read_journal


def test_fail_fast_transport_trips_and_resets():
    statuses = iter([200, 500, 200])
    transport = FailFastTransport(
        httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
    )
    with httpx.Client(transport=transport) as http:
        assert http.get("http://tiled/a").status_code == 200
        assert http.get("http://tiled/b").status_code == 500
        with pytest.raises(RequestAborted, match="HTTP 500"):
            http.get("http://tiled/c")
        assert not isinstance(
            RequestAborted("x"), httpx.HTTPError
        )  # not retried by Tiled
        transport.reset()
        assert http.get("http://tiled/d").status_code == 200


def test_fail_fast_transport_trips_on_transport_errors():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = FailFastTransport(httpx.MockTransport(refuse))
    with httpx.Client(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            http.get("http://tiled/a")
        with pytest.raises(RequestAborted, match="ConnectError"):
            http.get("http://tiled/b")


def test_journal_encoding_of_numpy_values():
    line = encode(
        "event", {"data": {"a": np.float32(1.5), "b": np.arange(3), "c": (1, 2)}}
    )
    name, doc = decode(line)
    assert name == "event"
    assert doc == {"data": {"a": 1.5, "b": [0, 1, 2], "c": [1, 2]}}


def test_truncated_last_line_is_dropped(tmp_path: Path):
    path = tmp_path / "run.jsonl"
    path.write_text(encode("start", {"uid": "u"}) + "\n" + '{"name": "desc')
    docs, truncated = read_journal(path)
    assert truncated and docs == [("start", {"uid": "u"})]
    path.write_text(
        '{"bad\n' + encode("start", {"uid": "u"}) + "\n" + encode("stop", {}) + "\n"
    )
    with pytest.raises(ReplayError, match="line 1"):
        read_journal(path)


def test_replay_skips_a_journal_being_written(tmp_path: Path):
    journal = JournalFile(tmp_path / "u.jsonl")
    journal.append(encode("start", {"uid": "u"}))
    try:
        (result,) = replay(object(), tmp_path)  # the client is never used
        assert result.status is ReplayStatus.SKIPPED
        assert "still writing" in result.message
    finally:
        journal.close()


class _RefusingClient:
    """A Tiled client stand-in whose every write fails (a broken server)."""

    uri = "http://tiled.invalid/api/v1/metadata/"

    def __init__(self) -> None:
        http_client = type("Http", (), {"_transport": None})()
        self.context = type(
            "Ctx", (), {"http_client": http_client, "close": lambda _: None}
        )()
        self.calls = 0

    def include_data_sources(self) -> _RefusingClient:
        return self

    def create_container(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise RuntimeError("server says no")


def _run_docs(n_events: int) -> list[tuple[str, dict]]:
    bundle = compose_run()
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"x": {"source": "sim", "dtype": "number", "shape": []}},
    )
    docs: list[tuple[str, dict]] = [
        ("start", dict(bundle.start_doc)),
        ("descriptor", dict(desc.descriptor_doc)),
    ]
    for i in range(n_events):
        docs.append(
            (
                "event",
                dict(desc.compose_event(data={"x": float(i)}, timestamps={"x": 0.0})),
            )
        )
    docs.append(("stop", dict(bundle.compose_stop())))
    return docs


@pytest.mark.filterwarnings(
    "ignore:The callback:UserWarning"
)  # event-model on a failing start
def test_failed_runs_stay_journaled_and_interleaved_runs_are_routed(tmp_path: Path):
    client = _RefusingClient()
    writer = DurableTiledWriter(
        client, journal_dir=tmp_path, stop_timeout=5, _own_client=True
    )
    try:
        run_a, run_b = _run_docs(3), _run_docs(5)
        # Interleave the two runs' documents (stops last).
        body_a, body_b = run_a[:-1], run_b[:-1]
        for i in range(max(len(body_a), len(body_b))):
            for body in (body_a, body_b):
                if i < len(body):
                    writer(*body[i])
        writer(*run_a[-1])
        writer(*run_b[-1])
        assert client.calls == 2  # each run tried Tiled; none was lost for it
        for run in (run_a, run_b):
            uid = run[0][1]["uid"]
            docs, truncated = read_journal(tmp_path / f"{uid}.jsonl")
            assert not truncated
            assert docs == [(n, json.loads(json.dumps(d))) for n, d in run]
        assert len(pending_journals(tmp_path)) == 2
        assert writer.stats.runs_pending == 2 and writer.stats.documents == 14
    finally:
        writer.close()


def test_replay_does_not_replace_a_complete_run_with_a_partial_journal(
    sqlite_backend, RE, make_writer, tmp_path: Path
):
    make_writer(sqlite_backend, journal_dir=tmp_path / "j")
    (uid,) = RE(bp.count([det], 4))
    written = tmp_path / "j" / "written" / f"{uid}.jsonl"
    partial = tmp_path / "partial" / f"{uid}.jsonl"
    partial.parent.mkdir()
    partial.write_text(
        "\n".join(written.read_text().splitlines()[:-1]) + "\n"
    )  # no stop
    (result,) = replay(sqlite_backend.client(), partial)
    assert result.status is ReplayStatus.SKIPPED and not result.complete
    assert partial.exists()  # left pending
    assert sqlite_backend.client()[uid].metadata["stop"]["num_events"] == {"primary": 4}


def test_replay_accepts_bluesky_tiled_plugins_backups(sqlite_backend, tmp_path: Path):
    docs = _run_docs(6)
    backup = JSONLinesWriter(str(tmp_path))
    for name, doc in docs:
        backup(name, doc)
    (result,) = replay(sqlite_backend.client(), tmp_path)
    assert result.status is ReplayStatus.REPLAYED and result.documents == 9
    uid = docs[0][1]["uid"]
    values = sqlite_backend.client()[uid]["primary"].read()["x"].values
    np.testing.assert_array_equal(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert (tmp_path / "written" / f"{uid.split('-')[0]}.jsonl").exists()
