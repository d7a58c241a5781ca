"""One worker: ask the study for a trial, train it, tell the result, until the budget is spent.

This is Optuna's ask-and-tell loop with the parts a shared, long-running study needs and
``Study.optimize`` does not give: a heartbeat thread that survives a database outage, storage
calls that retry through one, a trial that another worker already failed is dropped instead of
crashing the worker, and every error inside a trial (an exception, a NaN loss, CUDA out of
memory) fails that trial with its reason recorded and the worker carries on.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

import studies
from hpo.search import make_pruner, make_sampler
from hpo.storage import ResilientStorage, call_with_db_retry, open_storage, study_lock
from hpo.trial_run import RunSettings, TrialRun

log = logging.getLogger(__name__)

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
FAIL_REASON_ATTR = "fail_reason"
RETRY_OF_ATTR = "failed_trial"  # set by Optuna's RetryHeartbeatStaleTrialCallback on a retry


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs; plain data so it crosses a process boundary."""

    storage_url: str
    study_name: str
    definition: str
    sampler: str
    pruner: str
    run: RunSettings
    sampler_seed: int | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    total: int | None = None  # study-wide cap on finished trials, across all machines
    outage_tolerance: float = 120.0
    artifact_dir: str | None = None
    keep_checkpoints: int = 3
    label: str = "worker"
    device_label: str = "cpu"  # e.g. "cuda:2": recorded on each trial


class Budget(Protocol):
    """How many trials this worker may still start. The launcher shares one among workers."""

    def claim(self) -> bool: ...

    def started(self, trial_id: int) -> None: ...

    def finished(self, *, counted: bool) -> None: ...


class Events(Protocol):
    def emit(self, kind: str, **fields: Any) -> None: ...


class NoEvents:
    def emit(self, kind: str, **fields: Any) -> None:
        pass


class LocalBudget:
    """A budget of ``n`` trials (None: unlimited) for a worker running alone."""

    def __init__(self, n: int | None) -> None:
        self.remaining = n
        self.counted = 0

    def claim(self) -> bool:
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True

    def started(self, trial_id: int) -> None:
        pass

    def finished(self, *, counted: bool) -> None:
        if counted:
            self.counted += 1
        elif self.remaining is not None:
            self.remaining += 1  # a trial that did not count gives its slot back


class StopRequest:
    """SIGINT/SIGTERM handling: finish or fail the current trial, then stop.

    The first signal interrupts a running trial (it ends FAIL with the reason recorded); outside
    a trial it only asks the loop to stop, so a result being written is never cut in half.
    """

    def __init__(self) -> None:
        self.requested = False
        self._in_trial = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._in_trial:
            self._in_trial = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._in_trial = True
        try:
            yield
        finally:
            self._in_trial = False


class Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds from a thread.

    Unlike Optuna's own heartbeat thread it survives a failed write (a database outage), so a
    live trial is not declared stale just because the database blinked.
    """

    def __init__(self, storage: ResilientStorage, trial_id: int, interval: int) -> None:
        self._storage = storage.rdb  # no retry here: the loop itself retries every interval
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpo-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as error:
                log.debug("Heartbeat for trial id %s failed: %s", self._trial_id, error)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


def counted_finished(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Finished trials, counting a trial failed by heartbeat and retried only once (its retry).

    This is what ``--trials`` and ``--total`` count: the stale original stays FAIL in storage,
    but its retry, with the same params, takes its place.
    """
    finished = sum(t.state in FINISHED_STATES for t in trials)
    retries = sum(RETRY_OF_ATTR in t.system_attrs for t in trials)
    return finished - retries


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return message[:500]


class Worker:
    def __init__(self, config: WorkerConfig, *, budget: Budget, events: Events | None = None,
                 stop: StopRequest | None = None) -> None:
        self.config = config
        self.budget = budget
        self.events = events or NoEvents()
        self.stop = stop or StopRequest()
        self.definition = studies.get(config.definition)
        self.storage = open_storage(config.storage_url,
                                    heartbeat_interval=config.heartbeat_interval,
                                    grace_period=config.grace_period,
                                    outage_tolerance=config.outage_tolerance)
        self.sampler = make_sampler(config.sampler, self.definition, seed=config.sampler_seed)
        self.study = optuna.load_study(
            study_name=config.study_name, storage=self.storage, sampler=self.sampler,
            pruner=make_pruner(config.pruner, self.definition, epochs=config.run.epochs),
        )
        self.checkpoints = None
        if config.artifact_dir and config.keep_checkpoints > 0:
            from hpo.checkpoints import CheckpointKeeper

            self.checkpoints = CheckpointKeeper(self.study, config.artifact_dir,
                                                keep=config.keep_checkpoints)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run trials until the budget, the study-wide total or the grid is spent, or a stop
        is requested. Returns the number of counted trials this worker finished."""
        # This loop is our own Study.optimize: tell Optuna so (per thread), or GridSampler's
        # study.stop() at the end of the grid raises, and ask() warns that heartbeats need
        # optimize().
        self.study._thread_local.in_optimize_loop = True
        self._load_data()
        counted = 0
        while not self.stop.requested:
            if self._study_is_done():
                break
            if not self.budget.claim():
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            trial = self._ask()
            if trial is None:  # a peer took the last slot since _study_is_done looked
                self.budget.finished(counted=False)
                break
            self.budget.started(trial._trial_id)
            was_counted = False
            try:
                was_counted = self._run_trial(trial)
            finally:
                self.budget.finished(counted=was_counted)
            counted += was_counted
        return counted

    def _load_data(self) -> None:
        """Load the dataset onto the device once, before the first trial, so that no trial's
        duration includes it."""
        from hpo import data

        run = self.config.run
        self.events.emit("loading_data")
        data.load_splits(self.definition.dataset, Path(run.data_dir), synthetic=run.synthetic,
                         device=run.device, options=run.options)

    def _study_is_done(self) -> bool:
        if isinstance(self.sampler, optuna.samplers.GridSampler) \
                and self.sampler.is_exhausted(self.study):
            log.info("%s: every point of the grid has been tried.", self.config.label)
            return True
        return self._total_reached()

    def _total_reached(self) -> bool:
        if self.config.total is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if counted_finished(trials) + running >= self.config.total:
            log.info("%s: the study holds its total of %d trials.", self.config.label,
                     self.config.total)
            return True
        return False

    def _ask(self) -> optuna.Trial | None:
        """The next trial, or None if the study already holds its ``--total``.

        The check above is a cheap early exit but can race with peers; this one is exact: the
        count and the new trial are made in one transaction under the study's database lock,
        retried whole if the database drops mid-way.
        """
        if self.config.total is None:
            return self.study.ask()

        def locked_ask() -> optuna.Trial | None:
            with study_lock(self.storage, self.study._study_id):
                return None if self._total_reached() else self.study.ask()

        return call_with_db_retry(locked_ask, tolerance=self.config.outage_tolerance)

    # -- one trial --------------------------------------------------------------------------

    def _run_trial(self, trial: optuna.Trial) -> bool:
        """Run one trial to an end. Returns whether it counts against the budget: a trial that
        another worker failed by heartbeat does not (its retry will)."""
        number = trial.number
        self.events.emit("trial_started", trial=number)
        run = TrialRun(trial, self.definition, self.config.run,
                       on_epoch=lambda epoch, value: self.events.emit(
                           "epoch", trial=number, epoch=epoch, value=value))
        state, value, reason = TrialState.FAIL, None, None
        interrupted = False
        try:
            trial.set_user_attr("device", self.config.device_label)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            trial.set_user_attr("seed", run.seed)
            with Heartbeat(self.storage, trial._trial_id, self.config.heartbeat_interval), \
                    self.stop.interruptible():
                value = float(self.definition.objective(trial, run))
            if math.isfinite(value):
                state = TrialState.COMPLETE
                if self.checkpoints is not None and run.checkpoint_model is not None:
                    self._save_checkpoint(trial, run, value)
            else:
                reason = f"the objective returned {value}"
        except optuna.TrialPruned as pruned:
            state, reason = TrialState.PRUNED, str(pruned) or None
        except UpdateFinishedTrialError:
            return self._abandoned(number)
        except KeyboardInterrupt:
            interrupted = True
            reason = "interrupted: the worker was asked to stop"
        except Exception as error:  # anything inside a trial fails only that trial
            reason = describe_error(error)
            if _is_out_of_memory(error):
                reason = "CUDA out of memory: " + reason
        finally:
            run.checkpoint_model = None
            # An exception's traceback keeps the trial's frames (model, optimizer, batches)
            # alive in reference cycles; only the cycle collector frees them. It costs ~0.2 s,
            # so trials that ended normally skip it.
            _free_memory(self.config.run.device, collect=state != TrialState.COMPLETE)

        try:
            self._record_progress(trial, run)
            self._tell(trial, state, value, reason)
        except UpdateFinishedTrialError:
            return self._abandoned(number)
        self.events.emit("trial_finished", trial=number, state=state.name, value=value,
                         reason=reason)
        if state == TrialState.FAIL:
            log.warning("%s: trial %d failed: %s", self.config.label, number, reason)
        if interrupted:
            self.stop.requested = True
        return True

    @staticmethod
    def _record_progress(trial: optuna.Trial, run: TrialRun) -> None:
        # Once per trial rather than per epoch: each write is a database transaction.
        trial.set_user_attr("epochs_run", run.epochs_run)
        if run.seconds_per_epoch is not None:
            trial.set_user_attr("seconds_per_epoch", run.seconds_per_epoch)

    def _tell(self, trial: optuna.Trial, state: TrialState, value: float | None,
              reason: str | None) -> None:
        if state == TrialState.FAIL and reason:
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
        elif state == TrialState.PRUNED and reason:
            trial.set_user_attr("pruned_reason", reason)
        try:
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except (UpdateFinishedTrialError, ValueError):
            # A retried write may have landed before the connection dropped; only a trial
            # that someone else finished is a real conflict.
            frozen = self.storage.get_trial(trial._trial_id)
            if frozen.state != state:
                raise UpdateFinishedTrialError(f"trial {trial.number} was finished elsewhere")

    def _abandoned(self, number: int) -> bool:
        log.warning("%s: trial %d was failed by another worker (its heartbeat looked stale); "
                    "dropping it and carrying on.", self.config.label, number)
        self.events.emit("trial_finished", trial=number, state="ABANDONED", value=None,
                         reason="failed by another worker's heartbeat check")
        return False

    def _save_checkpoint(self, trial: optuna.Trial, run: TrialRun, value: float) -> None:
        try:
            self.checkpoints.offer(trial, run.checkpoint_model, value)
        except Exception as error:  # a full disk must not cost the trial its result
            log.warning("%s: could not save the checkpoint of trial %d: %s", self.config.label,
                        trial.number, describe_error(error))


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _free_memory(device: str, *, collect: bool) -> None:
    """Give back what a finished, pruned or failed trial held, so memory does not grow."""
    if collect:
        gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
