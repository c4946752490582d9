"""The Ray executor: the engine's backend calls run on a Ray cluster (``--executor ray``).

Imported only when asked for.  The engine stays on the driver with everything that
makes a run what it is (the cache, deduplication, caps, retries, progress, the
report); this module only runs its units of work on the cluster:

* a CPU backend's call is a Ray task asking for the CPUs the call uses
  (:attr:`Backend.cpus_per_call`, piper's threads), spread over the nodes;
* a batching (GPU) backend's batches go to actors, one per GPU (``num_gpus=1``;
  one CPU actor where the cluster has no GPU), which keep their loaded models
  (the backend's model LRU) for the executor's life, so across the scripts of a
  batch; a batch goes to an idle actor, preferring one that last ran its model.

A worker process that dies takes no line with it: Ray runs its tasks again
(``max_retries``) and restarts actors (``max_restarts``); when that runs out the
engine sees a transient error and retries with backoff.  A node that leaves the
cluster is reported (a warning) and its lines run on the others.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from dialog_tts.errors import SynthesisError, TransientSynthesisError
from dialog_tts.synth.portable import ViewRef, run_ref

if TYPE_CHECKING:
    from dialog_tts.backends.base import Backend
    from dialog_tts.script.voice import Voice

log = logging.getLogger("dialog_tts")

#: Times Ray runs a task again after its worker process or node died.
TASK_RETRIES = 3
#: Times Ray restarts an actor whose process died (its calls in flight are retried as often).
ACTOR_RESTARTS = 3
#: Seconds between two looks at the cluster's nodes (to report one that left).
NODE_CHECK_INTERVAL = 1.0


class _BatchWorker:
    """One GPU's worker: runs batches, keeping the models it loaded (the registry's instance)."""

    def call(self, ref: ViewRef, texts: Sequence[str], voices: Sequence[Voice], batch: bool) -> list[Any]:
        return run_ref(ref, texts, voices, batch)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RayExecutor:
    """Runs the engine's units of work on a Ray cluster (connected on first use).

    *address*: a cluster's address (``ray://...`` or ``host:port``); None uses
    ``$RAY_ADDRESS``, else starts a local cluster.  Where this process is already
    connected to Ray, that connection is used (and left open at :meth:`close`).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, gpus_per_actor: float | None = None) -> None:
        self.address = address
        self.gpus_per_actor = gpus_per_actor   # None: 1 where the cluster has GPUs, else 0
        self._lock = threading.RLock()
        self._ray: Any = None
        self._started = False
        self._task: Any = None
        self._refs: dict[int, tuple[Backend, Any]] = {}
        self._actors: list[Any] = []
        self._busy: list[int] = []
        self._last_group: list[object] = []
        self._nodes: dict[str, str] = {}
        self._checked = 0.0

    # ------------------------------------------------------------ the cluster
    def _connect(self) -> Any:
        with self._lock:
            if self._ray is not None:
                return self._ray
            import ray

            if not ray.is_initialized():
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
                self._started = True
            self._task = ray.remote(max_retries=TASK_RETRIES, scheduling_strategy="SPREAD")(run_ref)
            self._nodes = _alive_nodes(ray)
            self._ray = ray
            return ray

    def calls(self, view: Backend, slots: int) -> int:
        """The backend's cap alone: the cluster places each call where its cores are free."""
        return min(view.max_concurrency or slots, slots)

    def capacity(self, workers: int) -> int:
        """At least one line in flight per CPU of the cluster (more if ``workers`` says so)."""
        cpus = int(self._connect().cluster_resources().get("CPU", 1))
        return max(workers, cpus)

    def lanes(self, view: Backend) -> int:
        return self.actor_plan()[0]

    def actor_plan(self) -> tuple[int, float]:
        """(how many batch workers, GPUs each): one per GPU, or one on a CPU where there is none."""
        gpus = int(self._connect().cluster_resources().get("GPU", 0))
        per_actor = self.gpus_per_actor if self.gpus_per_actor is not None else (1 if gpus else 0)
        return (max(1, gpus) if per_actor else 1), per_actor

    def prepare(self, view: Backend, voices: Sequence[Voice], cache: object) -> None:
        """Nothing on the driver: a worker makes a voice's state (clone prompts) when it first needs it."""

    # ------------------------------------------------------------ calls
    def call(self, view: Backend, texts: Sequence[str], voices: Sequence[Voice], *, batch: bool) -> list[Any]:
        ray = self._connect()
        ref = self._ref(view)
        if view.batch_size > 1:
            actor = self._take_actor(view.batch_group(voices[0]))
            try:
                return self._get(ray, self._actors[actor].call.remote(ref, list(texts), list(voices), batch))
            finally:
                with self._lock:
                    self._busy[actor] -= 1
        task = self._task.options(num_cpus=view.cpus_per_call)
        return self._get(ray, task.remote(ref, list(texts), list(voices), batch))

    def _ref(self, view: Backend) -> Any:
        """The view put in the object store once (a view whose backend cannot travel is an error here)."""
        with self._lock:
            known = self._refs.get(id(view))
            if known is not None and known[0] is view:
                return known[1]
        try:
            stored = self._ray.put(ViewRef.of(view))
        except Exception as exc:  # noqa: BLE001 - pickling errors come as many types
            raise SynthesisError(f"backend {view.name!r} cannot be sent to Ray workers ({exc}); register "
                                 "a class or module-level function from an importable module") from None
        with self._lock:
            self._refs[id(view)] = (view, stored)
        return stored

    def _get(self, ray: Any, pending: Any) -> list[Any]:
        """The call's result; a backend's error as itself, a lost worker or node as a transient error."""
        from ray import exceptions

        started = time.monotonic()
        try:
            return ray.get(pending)
        except exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if cause is None:
                raise SynthesisError(str(exc).splitlines()[-1]) from None
            raise cause from None
        except exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise TransientSynthesisError(f"ray: {type(exc).__name__}: {first}") from None
        finally:        # a slow call may have been run again after its node left: look at once
            self._check_nodes(ray, force=time.monotonic() - started >= NODE_CHECK_INTERVAL)

    # ------------------------------------------------------------ actors (batching backends)
    def _take_actor(self, group: object) -> int:
        """An idle actor (created on first use), preferring the one that last ran *group*'s model."""
        with self._lock:
            if not self._actors:
                self._start_actors()
            idle = [i for i, busy in enumerate(self._busy) if busy == min(self._busy)]
            same = [i for i in idle if self._last_group[i] == group]
            actor = (same or idle)[0]
            self._busy[actor] += 1
            self._last_group[actor] = group
            return actor

    def _start_actors(self) -> None:
        count, per_actor = self.actor_plan()
        cls = self._ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)(_BatchWorker)
        self._actors = [cls.options(num_gpus=per_actor, num_cpus=1).remote() for _ in range(count)]
        self._busy = [0] * count
        self._last_group = [None] * count
        log.info("ray: %d batch worker(s), %g GPU each", count, per_actor)

    # ------------------------------------------------------------ nodes
    def _check_nodes(self, ray: Any, *, force: bool = False) -> None:
        """Warn once for each node that left the cluster since the last look (its lines run elsewhere)."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < NODE_CHECK_INTERVAL and not force:
                return
            self._checked = now
            before = self._nodes
        try:
            alive = _alive_nodes(ray)
        except Exception:  # noqa: BLE001 - a look at the cluster must not fail a line
            return
        with self._lock:
            gone = sorted(set(self._nodes) - set(alive))
            for node in gone:
                log.warning("ray: node %s (%s) left the cluster; its lines run on the other nodes",
                            node[:12], before.get(node, "?"))
            self._nodes = alive

    def close(self) -> None:
        with self._lock:
            ray, self._ray = self._ray, None
            actors, self._actors = self._actors, []
            self._refs.clear()
        if ray is None:
            return
        self._check_nodes(ray, force=True)
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - an actor already gone needs no killing
                log.debug("ray: batch worker already gone")
        if self._started:
            ray.shutdown()


def _alive_nodes(ray: Any) -> dict[str, str]:
    """Node id -> address of the cluster's live nodes."""
    return {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes() if n.get("Alive")}
