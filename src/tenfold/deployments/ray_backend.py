"""Replicas placed by Ray: with ``TENFOLD_CLUSTER`` set (a Ray address, or ``local`` to start a Ray instance
owned by this api process), each replica of a dedicated deployment, tenfold's engine or vLLM alike, is a named
Ray actor (``replica-<id>`` in the ``tenfold`` namespace, so ``ray list actors`` lists them) that asks for the
replica's resources (CPUs: the replica's torch threads; one GPU on a ``gpu.*`` profile) and runs the replica
process on the node Ray chose, with the same command line as a local replica.

Owns: connecting to the cluster (an address that does not answer is ``ClusterUnavailable``, checked before a
deployment is created, so none is half-created), the actor, and the ``ReplicaBackend`` methods over it:
``alive`` is false when the actor or its process is gone (a dead node takes its actors with it), and the
controller then replaces the replica. Where the replica runs (actor, node) is its ``placement``. Does not own:
how many replicas run (the controller) or their command line (``replicas.replica_command``).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from tenfold.config import Settings
from tenfold.deployments.profiles import engine_device
from tenfold.deployments.replicas import ReplicaHandle, ReplicaSpec, launch, replica_command, tail, terminate
from tenfold.errors import Unavailable

log = logging.getLogger("tenfold.deployments")
NAMESPACE = "tenfold"
PLACE_SECONDS = 120.0  # how long a replica may wait for Ray to find it a node


class ClusterUnavailable(Unavailable):
    default_code = "cluster_unavailable"


def _reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast (rather than Ray's minute of retries) when a ``host:port`` address does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as e:
        raise ClusterUnavailable(f"The Ray cluster at TENFOLD_CLUSTER={address!r} does not answer ({e}); start it "
                                 "(`ray start --head`) or fix the address, then retry.", retry_after=10) from None


def connect(cluster: str) -> None:
    """Join (or, for ``local``, start) the Ray cluster once per process."""
    import ray

    if ray.is_initialized():
        return
    common: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if cluster == "local":
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=True, **common)
    else:
        _reachable(cluster)
        try:
            ray.init(address=cluster, **common)
        except (ConnectionError, RuntimeError) as e:
            raise ClusterUnavailable(f"Could not join the Ray cluster at TENFOLD_CLUSTER={cluster!r}: {e}",
                                     retry_after=10) from None
    log.info("joined Ray cluster %s (namespace %s)", ray.get_runtime_context().gcs_address, NAMESPACE)


class _ReplicaActor:
    """One replica process on the node this actor was placed on."""

    def __init__(self, settings: Settings, spec: ReplicaSpec, loopback: bool) -> None:
        import ray

        host = "127.0.0.1" if loopback else ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        cmd, env = replica_command(settings, spec, host=host, port=port)
        self.log_path = settings.home / "replicas" / f"{spec.replica_id}.log"
        self.proc: subprocess.Popen = launch(cmd, env, self.log_path)
        self.endpoint = f"http://{host}:{port}"
        self.node = ray.get_runtime_context().get_node_id()

    def info(self) -> dict:
        return {"pid": self.proc.pid, "endpoint": self.endpoint, "node": self.node}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float) -> None:
        if self.proc.poll() is None:
            terminate(self.proc.pid, lambda: self.proc.poll() is None, grace=grace)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int) -> str:
        return tail(self.log_path, lines)


class RayBackend:
    """Replicas as Ray actors (see the module docstring)."""

    def __init__(self, settings: Settings, cluster: str) -> None:
        self.settings = settings
        self.cluster = cluster
        self._actor_class: Any = None

    def check(self) -> None:
        """``ClusterUnavailable`` when the cluster cannot be reached (called before a deployment is created)."""
        connect(self.cluster)

    def _cls(self) -> Any:
        import ray

        if self._actor_class is None:
            self._actor_class = ray.remote(max_restarts=0, max_concurrency=4)(_ReplicaActor)
        return self._actor_class

    @staticmethod
    def actor_name(replica_id: str) -> str:
        return f"replica-{replica_id}"

    def start(self, spec: ReplicaSpec) -> ReplicaHandle:
        import ray

        connect(self.cluster)
        s = self.settings
        gpu = engine_device(spec.hardware_profile) == "cuda"
        cpus = max(1, s.replica_torch_threads or s.torch_threads or 1)
        actor = self._cls().options(name=self.actor_name(spec.replica_id), lifetime="detached", num_cpus=cpus,
                                    num_gpus=1 if gpu else 0).remote(s, spec, self.cluster == "local")
        try:
            info = ray.get(actor.info.remote(), timeout=PLACE_SECONDS)
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise RuntimeError(f"Ray found no node with {cpus} free CPU(s){' and a GPU' if gpu else ''} within "
                               f"{PLACE_SECONDS:g} s") from None
        placement = f"ray actor {self.actor_name(spec.replica_id)} on node {info['node'][:12]}"
        return ReplicaHandle(spec.replica_id, info["pid"], info["endpoint"], placement)

    def _actor(self, replica_id: str) -> Any:
        import ray

        connect(self.cluster)
        try:
            return ray.get_actor(self.actor_name(replica_id), namespace=NAMESPACE)
        except ValueError:  # no such actor: it died, or was never placed
            return None

    def alive(self, handle: ReplicaHandle) -> bool:
        import ray

        actor = self._actor(handle.replica_id)
        if actor is None:
            return False
        try:
            return bool(ray.get(actor.alive.remote(), timeout=10))
        except ray.exceptions.GetTimeoutError:
            return True  # busy, not known dead: the health check decides
        except ray.exceptions.RayActorError:
            return False

    def stop(self, handle: ReplicaHandle, *, grace: float = 10.0) -> None:
        import ray

        actor = self._actor(handle.replica_id)
        if actor is None:
            return
        try:
            ray.get(actor.stop.remote(grace), timeout=grace + 10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        ray.kill(actor)

    def log_tail(self, replica_id: str, lines: int = 15) -> str:
        import ray

        actor = self._actor(replica_id)
        if actor is not None:
            try:
                return str(ray.get(actor.log_tail.remote(lines), timeout=10))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
        return tail(Path(self.settings.home) / "replicas" / f"{replica_id}.log", lines)
