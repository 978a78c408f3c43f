"""The bus's pure logic, without sockets: the writer service's checkpoint,
which messages it quarantines, and how it routes documents to runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panda_flyscan.storage.bus import (
    Checkpoint,
    CheckpointFile,
    Malformed,
    Router,
    RunTracker,
    documents_subject,
    parse_message,
)
from panda_flyscan.storage.journal import encode


def test_checkpoint_file_round_trip_and_default(tmp_path: Path) -> None:
    store = CheckpointFile(tmp_path / "state" / "checkpoint.json")
    assert store.load() == Checkpoint(1, 0)  # none yet: the start of the stream
    store.save(Checkpoint(7, 42))
    assert store.load() == Checkpoint(7, 42)
    store.save(Checkpoint(43, 42))
    assert store.load() == Checkpoint(43, 42)
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["checkpoint.json"]


def test_checkpoint_holds_at_the_oldest_open_run() -> None:
    tracker = RunTracker()
    assert tracker.checkpoint() == Checkpoint(1, 0)
    tracker.started("a", 1)
    for seq in range(1, 4):
        tracker.processed(seq)
    tracker.started("b", 4)  # another RunEngine's run, interleaved
    for seq in range(4, 10):
        tracker.processed(seq)
    assert tracker.checkpoint() == Checkpoint(1, 9)
    tracker.finished("a")
    assert tracker.checkpoint() == Checkpoint(4, 9)
    tracker.finished("b")
    assert tracker.checkpoint() == Checkpoint(10, 9)


def test_restart_knows_which_messages_it_reads_again() -> None:
    tracker = RunTracker(Checkpoint(4, 9))
    assert tracker.replaying(4) and tracker.replaying(9)
    assert not tracker.replaying(10)
    # Before anything is processed again, a restart resumes at the same place.
    assert tracker.checkpoint() == Checkpoint(4, 9)
    tracker.started("b", 4)
    tracker.processed(4)
    assert tracker.checkpoint() == Checkpoint(4, 9)
    tracker.finished("b")
    tracker.processed(12)
    assert tracker.checkpoint() == Checkpoint(13, 12)


def _start(uid: str = "r1") -> bytes:
    return encode("start", {"uid": uid, "time": 1.0}).encode()


def test_parse_accepts_documents_with_numpy_values() -> None:
    event = {
        "uid": "e1",
        "descriptor": "d1",
        "time": 1.0,
        "seq_num": 1,
        "data": {"x": np.float64(1.5), "img": np.arange(3)},
        "timestamps": {"x": 1.0, "img": 1.0},
        "filled": {},
    }
    name, doc = parse_message(encode("event", event).encode())
    assert name == "event"
    assert doc["data"] == {"x": 1.5, "img": [0, 1, 2]}
    assert parse_message(_start()) == ("start", {"uid": "r1", "time": 1.0})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a {'name'"),
        (encode("gossip", {}).encode(), "unknown document name 'gossip'"),
        (b'{"name": "start", "doc": 3}', "start document is not an object"),
        (encode("start", {"time": 1.0}).encode(), "start document without uid"),
        (encode("event_page", {"uid": "x"}).encode(), "without descriptor"),
        (
            encode(
                "event_page", {"descriptor": "d", "uid": "u", "time": [1.0]}
            ).encode(),
            "invalid event_page document",
        ),
    ],
)
def test_parse_refuses_what_the_writer_cannot_use(data: bytes, reason: str) -> None:
    with pytest.raises(Malformed, match=reason.replace("[", r"\[")):
        parse_message(data)


def test_schema_check_can_be_skipped() -> None:
    bad_page = encode("event_page", {"descriptor": "d", "uid": "u"}).encode()
    assert parse_message(bad_page, validate=False)[0] == "event_page"


def test_router_follows_runs_and_finds_orphans() -> None:
    router = Router()
    assert router.route("descriptor", {"uid": "d0", "run_start": "old"}) is None
    assert router.route("start", {"uid": "r1"}) == "r1"
    assert router.route("descriptor", {"uid": "d1", "run_start": "r1"}) == "r1"
    assert router.route("stream_resource", {"uid": "s1"}) == "r1"  # no run_start
    assert router.route("stream_datum", {"stream_resource": "s1"}) == "r1"
    assert router.route("event_page", {"descriptor": "d1"}) == "r1"
    assert router.route("event_page", {"descriptor": "d0"}) is None
    assert router.route("stop", {"run_start": "r1"}) == "r1"
    router.close("r1")
    assert router.route("event", {"descriptor": "d1"}) is None
    assert router.route("stop", {"run_start": "r1"}) is None


def test_subject_per_beamline() -> None:
    assert documents_subject("bl01-a") == "bluesky.bl01-a.documents"
    with pytest.raises(ValueError, match="subject token"):
        documents_subject("bl.01")
