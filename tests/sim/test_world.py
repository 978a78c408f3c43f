"""The simulated world: axes and encoders, pure functions of the tick."""

from __future__ import annotations

from sim_ioc.world import Encoder, World


def walk(encoder: Encoder, start: int) -> list[tuple[int, int]]:
    ts, out = start, []
    while (nxt := encoder.next_change(ts)) is not None:
        ts = nxt
        out.append((ts, encoder.count(ts)))
    return out


def test_encoder_visits_every_count_once_in_both_directions() -> None:
    axis = World().axis("X")
    encoder = Encoder(axis, resolution=1000)
    end = axis.move(0, 0.5, speed=100.0)  # 500 counts in 5 ms
    steps = walk(encoder, 0)
    assert [c for _, c in steps] == list(range(1, 501))
    assert steps[-1][0] == end == 625_000
    axis.move(end, -0.25, speed=100.0)
    back = walk(encoder, end)
    assert [c for _, c in back] == list(range(499, -251, -1))


def test_count_changes_at_the_tick_the_position_crosses() -> None:
    axis = World().axis("X")
    encoder = Encoder(axis, resolution=1.0, offset=0.0)
    axis.move(0, 10.0, speed=1.0)  # one count per second
    ts = encoder.next_change(0)
    assert ts == 125_000_000
    assert encoder.count(ts - 1) == 0
    assert encoder.count(ts) == 1
