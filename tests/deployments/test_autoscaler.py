"""The autoscaler on recorded traces with a fake clock: up on rate or p95 TTFT over the up window, down one
step only after the stabilisation window below target, never flapping inside it, within min/max, to zero
and back."""

from __future__ import annotations

from tenfold.deployments.autoscaler import Targets, Window, decide

T = Targets(min_replicas=1, max_replicas=3, target_rps=2.0, target_latency_p95_ms=1000.0, scale_down_window=60.0,
            up_window=10.0)


def trace(rate: float, start: float, end: float, ttft_ms: float = 100.0) -> Window:
    """A steady ``rate`` of requests from ``start`` to ``end``, each with the given time to first token."""
    w = Window()
    n = int((end - start) * rate)
    for i in range(n):
        t = start + i / rate
        w.arrivals.append(t)
        w.ttfts.append((t + 0.1, ttft_ms))
    return w


def run(targets: Targets, window: Window, *, until: float, every: float = 1.0, current: int = 1,
        waking_at: float | None = None) -> list[tuple[float, int, str]]:
    """Call decide every ``every`` seconds from 0 to ``until``; return the changes (time, replicas, reason)."""
    changes, last_change, t = [], 0.0, 0.0
    while t <= until:
        d = decide(targets, window, current=current, now=t, last_change=last_change,
                   waking=waking_at is not None and t >= waking_at and current == 0)
        if d.changed:
            current, last_change = d.replicas, t
            changes.append((t, current, d.reason))
        t += every
    return changes


def test_scales_up_at_once_on_rate_and_down_after_the_window_one_step_at_a_time():
    w = trace(5.0, 0, 100)  # 5 rps for 100 s: needs 3 replicas at 2 rps each
    w.arrivals += [t for t in trace(1.0, 100, 300).arrivals]  # then 1 rps: 1 replica is enough
    changes = run(T, w, until=300)
    counts = [c[1] for c in changes]
    peak = counts.index(3)
    assert counts[: peak + 1] == sorted(counts[: peak + 1]) and counts[peak:] == [3, 2, 1]
    assert changes[peak][0] <= T.up_window and all("requests/s per replica" in c[2] for c in changes[: peak + 1])
    # down only once a whole stabilisation window below target has passed, and not twice within a window
    down = changes[peak + 1:]
    assert down[0][0] >= 100 + T.up_window and down[1][0] - down[0][0] >= T.scale_down_window
    assert all("fits" in c[2] for c in down)


def test_latency_target_adds_one_replica_at_a_time_within_max():
    w = trace(1.0, 0, 200, ttft_ms=3000.0)  # low rate, slow first tokens
    changes = run(T, w, until=200)
    assert [c[1] for c in changes] == [2, 3]
    assert all("p95 time to first token" in c[2] for c in changes)


def test_no_flapping_on_a_bursty_trace():
    w = Window()
    for burst in range(0, 300, 40):  # 10 s bursts at 6 rps every 40 s
        w.arrivals += trace(6.0, burst, burst + 10).arrivals
    changes = run(T, w, until=300)
    counts = [c[1] for c in changes]
    assert counts and counts[-1] == 3
    # the bursts come back within every stabilisation window, so it only ever scales up
    assert counts == sorted(counts)


def test_scale_to_zero_after_the_window_and_wake_on_a_request():
    t0 = Targets(min_replicas=0, max_replicas=2, target_rps=2.0, target_latency_p95_ms=1000.0,
                 scale_down_window=30.0, up_window=10.0)
    w = trace(0.5, 0, 20)
    changes = run(t0, w, until=100)
    assert changes[-1][1] == 0 and changes[-1][0] >= w.arrivals[-1] + 30 and "zero" in changes[-1][2]
    woken = run(t0, Window(), until=5, current=0, waking_at=3)
    assert woken == [(3.0, 1, "a request arrived while scaled to zero")]
    idle = run(t0, Window(), until=100, current=0)
    assert idle == []
    # woken and still waiting for its replica: never scaled back down before one is ready
    waiting = [decide(t0, Window(), current=1, now=now, last_change=0.0, waking=True) for now in (10.0, 100.0)]
    assert all(d.replicas == 1 and not d.changed and "waiting" in d.reason for d in waiting)


def test_limits_are_respected():
    hot = trace(50.0, 0, 50)
    assert max(c[1] for c in run(T, hot, until=50)) == 3  # max_replicas
    low = Targets(min_replicas=2, max_replicas=4, target_rps=2.0, target_latency_p95_ms=1000.0,
                  scale_down_window=10.0, up_window=5.0)
    changes = run(low, Window(), until=100, current=1)
    assert changes == [(0.0, 2, "within limits: 2..4 replicas")]  # raised to min, never below it
