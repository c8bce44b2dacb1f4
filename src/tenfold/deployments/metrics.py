"""Prometheus series of dedicated deployments, exported on the api's ``/metrics``.

Owns: per deployment the replicas desired and ready, requests in flight (its queue), p95 time to first
token over the autoscaler's window, and cold starts (count and seconds from the request or decision that
asked for a replica to the replica answering healthy); per replica its requests in flight and health.
Does not own: the values (the controller sets them each tick).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DESIRED = Gauge("tenfold_deployment_replicas_desired", "Replicas the autoscaler wants", ["deployment"])
READY = Gauge("tenfold_deployment_replicas_ready", "Replicas answering healthy", ["deployment"])
IN_FLIGHT = Gauge("tenfold_deployment_in_flight_requests", "Requests in flight on the deployment", ["deployment"])
P95_TTFT = Gauge("tenfold_deployment_p95_ttft_ms", "p95 time to first token over the autoscaler's window",
                 ["deployment"])
COLD_STARTS = Counter("tenfold_deployment_cold_starts", "Replicas started until healthy", ["deployment"])
COLD_START_SECONDS = Histogram("tenfold_deployment_cold_start_seconds", "Seconds until a started replica is healthy",
                               ["deployment"], buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300))
REPLICA_IN_FLIGHT = Gauge("tenfold_replica_in_flight_requests", "Requests in flight on a replica",
                          ["deployment", "replica"])
REPLICA_HEALTHY = Gauge("tenfold_replica_healthy", "1 when the replica answers its health check",
                        ["deployment", "replica"])


def forget_replica(deployment_id: str, replica_id: str) -> None:
    for gauge in (REPLICA_IN_FLIGHT, REPLICA_HEALTHY):
        try:
            gauge.remove(deployment_id, replica_id)
        except KeyError:
            pass
