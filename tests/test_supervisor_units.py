"""The IOC supervisor's decisions and log reading, without an IOC."""

from __future__ import annotations

from pathlib import Path

from panda_flyscan.app.simulated.supervisor import (
    MB,
    HealPolicy,
    IocUsage,
    LogWatch,
    diagnose,
    ioc_usage,
)

POLICY = HealPolicy()


def check(**kwargs: object) -> str | None:
    args: dict[str, object] = {
        "exit_code": None,
        "exited": False,
        "new_log": "",
        "usage": IocUsage(pid=1, rss_bytes=300 * MB, threads=30),
        "log_rate": 100.0,
    }
    args.update(kwargs)
    return diagnose(POLICY, **args)  # type: ignore[arg-type]


def test_a_healthy_ioc_is_left_alone() -> None:
    assert check() is None
    assert check(new_log="INFO:Opened '/data/x.h5'\nINFO:Closed '/data/x.h5'\n") is None


def test_each_reason_to_restart_is_named() -> None:
    assert check(exited=True, exit_code=-9) == "it exited (code -9)"
    lost = check(new_log="...\nAssertionError: connect() not called yet\n")
    assert lost is not None and "lost its PandA" in lost
    big = IocUsage(pid=1, rss_bytes=POLICY.max_rss_bytes + MB, threads=30)
    assert (rss := check(usage=big)) is not None and rss.startswith("runaway: RSS")
    fast = check(log_rate=POLICY.max_log_rate * 2)
    assert fast is not None and "log growing" in fast


def test_the_log_watch_reads_only_what_was_added(tmp_path: Path) -> None:
    log = tmp_path / "ioc.log"
    log.write_text("old IOC: connect() not called yet\n")
    watch = LogWatch(log, window=1.0, from_end=True)
    assert watch.poll(0.0) == ""  # an earlier IOC's lines are not this one's
    with log.open("a") as f:
        f.write("INFO:Opened '/data/a.h5'\n")
    assert "Opened" in watch.poll(0.5)
    assert watch.file_open
    with log.open("a") as f:
        f.write("INFO:Closed '/data/a.h5'\n" + "x" * 5000 + "\n")
    watch.poll(1.5)
    assert not watch.file_open
    rate = watch.rate()
    assert rate is not None and rate > 1000  # ~5 kB over ~1.5 s


def test_a_runaway_log_is_read_tail_first(tmp_path: Path) -> None:
    log = tmp_path / "ioc.log"
    log.write_bytes(b"y" * (3 * MB) + b"\nconnect() not called yet\n")
    watch = LogWatch(log, window=1.0, max_read=MB)
    text = watch.poll(0.0)
    assert len(text) <= MB and "connect() not called yet" in text


def test_usage_of_this_process_is_read_from_proc() -> None:
    import os

    usage = ioc_usage(os.getpid())
    assert usage is not None and usage.rss_bytes > MB and usage.threads >= 1
    assert ioc_usage(2**22 + 1) is None  # no such process
