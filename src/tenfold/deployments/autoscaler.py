"""The autoscaler: a pure policy from a window of traffic to a replica count, with no I/O and no clock of
its own (the caller passes ``now``), so it is tested on recorded traces.

Owns: ``Targets`` (a deployment's limits and targets), ``Window`` (request arrivals and time-to-first-token
samples of the last minutes), ``decide`` and its ``Decision`` (the replica count and why). The rules:
- up, at once, when the request rate per replica over the last ``up_window`` seconds exceeds ``target_rps``
  or the p95 time to first token over that window exceeds ``target_latency_p95_ms`` (to as many replicas as
  the rate needs at ``target_rps`` each, at least one more);
- down only after the traffic has stayed below what one replica fewer could take for the whole
  ``scale_down_window`` since the last change, one step at a time (never flapping inside the window);
- to zero when ``min_replicas`` is 0 and no request arrived during ``scale_down_window``; from zero when a
  request arrives (the router wakes the deployment), holding until a replica is ready;
- always within ``[min_replicas, max_replicas]``.
Does not own: collecting the window (the router), acting on the decision (the controller).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Targets:
    min_replicas: int
    max_replicas: int
    target_rps: float  # requests per second one replica should take
    target_latency_p95_ms: float  # p95 time to first token
    scale_down_window: float  # seconds below target before one replica is removed (stabilisation)
    up_window: float = 30.0  # seconds of traffic the scale-up signals look at


@dataclass
class Window:
    """What the router saw: arrival times of requests and (finish time, TTFT in ms) of first tokens."""

    arrivals: list[float] = field(default_factory=list)
    ttfts: list[tuple[float, float]] = field(default_factory=list)

    def trim(self, before: float) -> None:
        self.arrivals = [t for t in self.arrivals if t >= before]
        self.ttfts = [x for x in self.ttfts if x[0] >= before]

    def rate(self, now: float, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        return sum(1 for t in self.arrivals if now - seconds <= t <= now) / seconds

    def p95_ttft_ms(self, now: float, seconds: float) -> float | None:
        samples = sorted(ms for t, ms in self.ttfts if now - seconds <= t <= now)
        if not samples:
            return None
        return samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)]

    def last_arrival(self) -> float | None:
        return self.arrivals[-1] if self.arrivals else None


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    changed: bool


def _clamp(n: int, t: Targets) -> int:
    return max(t.min_replicas, min(t.max_replicas, n))


def decide(t: Targets, w: Window, *, current: int, now: float, last_change: float,
           waking: bool = False) -> Decision:
    """The replica count for the deployment now, given ``current`` replicas (desired so far) and when that
    count last changed. ``waking``: a request found no replica and waits for one (no scaling down until one
    is ready)."""

    def keep(reason: str) -> Decision:
        return Decision(current, reason, False)

    def to(n: int, reason: str) -> Decision:
        return Decision(n, reason, n != current)

    if current < t.min_replicas or current > t.max_replicas:
        n = _clamp(current, t)
        return to(n, f"within limits: {t.min_replicas}..{t.max_replicas} replicas")
    if current == 0:
        if waking or w.rate(now, t.up_window) > 0:
            return to(_clamp(1, t), "a request arrived while scaled to zero")
        return keep("scaled to zero; idle")
    rate = w.rate(now, t.up_window)
    per_replica = rate / current
    p95 = w.p95_ttft_ms(now, t.up_window)
    if per_replica > t.target_rps and current < t.max_replicas:
        need = max(current + 1, math.ceil(rate / t.target_rps))
        return to(_clamp(need, t), f"{per_replica:.2f} requests/s per replica over the last {t.up_window:g} s "
                                   f"exceeds the target of {t.target_rps:g}")
    if p95 is not None and p95 > t.target_latency_p95_ms and current < t.max_replicas:
        return to(_clamp(current + 1, t), f"p95 time to first token {p95:.0f} ms over the last {t.up_window:g} s "
                                          f"exceeds the target of {t.target_latency_p95_ms:g} ms")
    if waking:
        return keep(f"holding {current}: requests are waiting for a replica to be ready")
    calm_for = now - last_change
    if calm_for < t.scale_down_window:
        return keep(f"holding {current}: last change {calm_for:.0f} s ago, within the {t.scale_down_window:g} s "
                    "stabilisation window")
    window_rate = w.rate(now, t.scale_down_window)
    if current > t.min_replicas:
        fewer = current - 1
        if fewer == 0:
            if w.rate(now, t.scale_down_window) == 0:
                return to(0, f"no requests for {t.scale_down_window:g} s; scaling to zero")
            return keep("requests arrived within the stabilisation window")
        busiest = _peak(w, now, t, current)
        if window_rate / fewer <= t.target_rps and busiest / fewer <= t.target_rps and \
                (p95 is None or p95 <= t.target_latency_p95_ms):
            return to(fewer, f"{window_rate:.2f} requests/s over the last {t.scale_down_window:g} s fits "
                             f"{fewer} replica(s) at {t.target_rps:g} each")
    return keep(f"{current} replica(s) fit {rate:.2f} requests/s")


def _peak(w: Window, now: float, t: Targets, current: int) -> float:
    """The highest rate over any ``up_window`` inside the stabilisation window (so a burst in the window
    counts, not only its average)."""
    start = now - t.scale_down_window
    step = max(1.0, t.up_window / 2)
    points: Sequence[float] = [start + t.up_window + i * step
                               for i in range(max(1, int((t.scale_down_window - t.up_window) / step) + 1))]
    return max((w.rate(min(p, now), t.up_window) for p in points), default=0.0)
