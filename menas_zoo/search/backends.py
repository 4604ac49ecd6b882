"""Where a generation's trials run: in this process (default) or as Ray tasks on a cluster.

A backend takes the trials still to run and yields their outcomes as they finish; the search loop
persists each one at once, so the backend needs no state of its own. ``should_stop`` is the wall-clock
budget: in-process it is asked between training steps, so a search stops within a step of its budget
and the interrupted trial resumes from its last checkpointed epoch; Ray cancels the tasks that have not
finished. We do not schedule anything ourselves: Ray does that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from menas_zoo.data import DataSplits
from menas_zoo.errors import MenasError
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.fitness import LatencyFn
from menas_zoo.search.trial import TrialJob, TrialOutcome, run_trial
from menas_zoo.train import TrainingInterrupted

BACKENDS = ("in-process", "ray")


class InProcessBackend:
    name = "in-process"

    def run(self, jobs: Sequence[TrialJob], splits: DataSplits, cfg: SearchConfig, latency_fn: LatencyFn | None,
            should_stop: Callable[[], bool], work_dir: Callable[[int], Path] | None = None) -> Iterator[TrialOutcome]:
        """Trials one after another; the budget is checked between training steps, and an interrupted
        trial resumes from its last finished epoch (checkpointed under ``work_dir(index)``) next time."""
        for job in jobs:
            if should_stop():
                return
            folder = work_dir(job.candidate.index) if work_dir is not None else None
            try:
                yield run_trial(job, splits, cfg, latency_fn, should_stop=should_stop, work_dir=folder)
            except TrainingInterrupted:
                return


class RayBackend:
    """One Ray task per trial (``num_cpus=1``, one GPU each when the search runs on CUDA)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise MenasError("--backend ray needs Ray: pip install 'menas-zoo[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, ignore_reinit_error=True,
                         include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MenasError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}") from None
        self._splits_ref = None
        self._splits_id: int | None = None

    def run(self, jobs: Sequence[TrialJob], splits: DataSplits, cfg: SearchConfig, latency_fn: LatencyFn | None,
            should_stop: Callable[[], bool], work_dir: Callable[[int], Path] | None = None) -> Iterator[TrialOutcome]:
        # Workers may not share this file system: their trials are not checkpointed, and one cut short
        # by the budget is cancelled and run again on resume.
        ray = self.ray
        if self._splits_id != id(splits):  # the dataset goes to the object store once per search
            self._splits_ref, self._splits_id = ray.put(splits), id(splits)
        gpus = 1 if cfg.device.startswith("cuda") or (cfg.device == "auto" and _has_cuda()) else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus)(run_trial)
        pending = [task.remote(job, self._splits_ref, cfg, latency_fn) for job in jobs]
        try:
            while pending:
                if should_stop():
                    return
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_backend(name: str = "in-process", address: str | None = None):
    if name == "in-process":
        if address:
            raise MenasError("--address only applies to --backend ray")
        return InProcessBackend()
    if name == "ray":
        return RayBackend(address)
    raise MenasError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
