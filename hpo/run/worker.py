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
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo import _optuna
from hpo.definition import StudyDefinition
from hpo.errors import first_line
from hpo.results import note
from hpo.run.budget import Budget, counted_finished
from hpo.run.presence import Presence
from hpo.run.stale import fail_and_retry, fail_stale_trials
from hpo.search.algorithms import make_pruner, make_sampler
from hpo.search.stopping import patience_spent
from hpo.spec import LaunchSpec, WorkerSlot
from hpo.storage.attributes import (
    BASELINE_ATTR,
    EPOCHS_RUN_ATTR,
    FAIL_REASON_ATTR,
    INTERRUPTED_REASON,
    ORIGIN_ATTR,
    PRUNED_REASON_ATTR,
    SECONDS_PER_EPOCH_ATTR,
    STOPPED_REASON,
    describe_stop,
    stop_mark,
)
from hpo.storage.engine import open_storage
from hpo.storage.retry import DatabaseUnreachable, ResilientStorage, call_with_db_retry
from hpo.storage.transactions import study_lock
from hpo.train.trial_run import TrialRun

log = logging.getLogger(__name__)

class Events(Protocol):
    def emit(self, kind: str, **fields: Any) -> None: ...


class NoEvents:
    def emit(self, kind: str, **fields: Any) -> None:
        pass


class StopRequest:
    """SIGINT/SIGTERM handling: finish or fail the current trial, then stop.

    The first signal interrupts a running trial (it ends FAIL with the reason recorded); outside
    a trial it only asks the loop to stop, so a result being written is never cut in half.
    """

    def __init__(self) -> None:
        self.requested = False
        self.reason: str | None = None  # why the trial was interrupted, if not by a signal
        self._in_trial = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._in_trial:
            self._in_trial = False
            raise KeyboardInterrupt

    def interrupt(self, reason: str) -> None:
        """From another thread (the heartbeat's): stop, and interrupt a running trial as a
        signal would, its fail_reason ``reason``. The signal goes to this process's main
        thread, where the trial runs; Python runs the handler between two bytecodes there."""
        self.reason = reason
        self.requested = True
        main = threading.main_thread()
        if self._in_trial and main.ident is not None and main.is_alive():
            signal.pthread_kill(main.ident, signal.SIGINT)

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

    def __init__(self, storage: ResilientStorage, trial_id: int, interval: int,
                 on_beat: Callable[[], None] | None = None) -> None:
        self._storage = storage.rdb  # no retry here: the loop itself retries every interval
        self._trial_id = trial_id
        self._interval = interval
        self._on_beat = on_beat  # also once per interval: the stop mark (hpo stop)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpo-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as error:
                log.debug("Heartbeat for trial id %s failed: %s", self._trial_id, error)
            if self._on_beat is not None:
                try:
                    self._on_beat()
                except Exception as error:  # the next beat tries again
                    log.debug("Checking the stop mark failed: %s", error)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


class Worker:
    """Runs trials of ``spec``'s study (of ``definition``) on ``slot``'s device until the
    budget, the study-wide total or the grid is spent, or a stop is requested."""

    def __init__(self, spec: LaunchSpec, definition: StudyDefinition, slot: WorkerSlot, *,
                 budget: Budget, events: Events | None = None, stop: StopRequest | None = None,
                 restarts: int = 0) -> None:
        self.spec = spec
        self.slot = slot
        self.label = slot.label
        # A worker process sees only its own GPU (CUDA_VISIBLE_DEVICES), as device 0.
        self.device = "cpu" if slot.device == "cpu" else "cuda:0"
        self.budget = budget
        self.events = events or NoEvents()
        self.stop = stop or StopRequest()
        self.definition = definition
        # The study's stop mark once this worker has seen it: kept, so that a launch that
        # clears the mark does not send this worker on to another trial.
        self.stopped: dict[str, Any] | None = None
        self.storage = open_storage(spec.storage_url,
                                    heartbeat_interval=spec.heartbeat_interval,
                                    grace_period=spec.grace_period,
                                    outage_tolerance=spec.outage_tolerance, ride_out=True)
        # Each worker, and each restart of one, samples from its own stream.
        self.sampler = make_sampler(spec.sampler, self.definition,
                                    seed=spec.seed + slot.index + 1000 * restarts)
        self.study = optuna.load_study(
            study_name=spec.study_name, storage=self.storage, sampler=self.sampler,
            pruner=make_pruner(spec.pruner, self.definition, epochs=spec.epochs),
        )
        self.presence = Presence(self.storage, self.study, slot, started_by=spec.started_by,
                                 grace_period=spec.grace_period)
        self.checkpoints = None
        if spec.artifact_dir and spec.keep_checkpoints > 0:
            from hpo.train.checkpoints import CheckpointKeeper

            try:
                self.checkpoints = CheckpointKeeper(self.study, spec.artifact_dir,
                                                    keep=spec.keep_checkpoints)
            except OSError as error:  # a folder it cannot write costs files, never trials
                log.warning("%s: Cannot write checkpoints to %s (%s): trials keep their "
                            "results, but none is checkpointed; point HPO_ARTIFACT_DIR at a "
                            "folder this worker can write.", self.label, spec.artifact_dir,
                            first_line(error, limit=200))

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run trials until the budget, the study-wide total or the grid is spent, or a stop
        is requested. Returns the number of counted trials this worker finished."""
        _optuna.enter_optimize_loop(self.study)
        self.presence.write()
        try:
            counted = self._run_trials()
        finally:
            self.presence.clear()
        note.refresh(self.study, self.storage.rdb)  # the note no longer lists this worker
        return counted

    def _run_trials(self) -> int:
        self._load_data()
        counted = 0
        while not self.stop.requested:
            if self._study_is_done():
                break
            if not self.budget.claim():
                break
            # Fails trials whose worker is gone, also those that never sent a heartbeat.
            fail_stale_trials(self.storage, self.study, grace=self.spec.grace_period)
            trial = self._ask()
            if trial is None:  # a peer took the last slot since _study_is_done looked
                self.budget.finished(counted=False)
                continue  # _study_is_done waits for that trial, and says when the total is held
            self.budget.started(_optuna.trial_id_of(trial))
            # An exception out of the trial (the database lost) leaves the budget unit and the
            # trial to the launcher, which fails the trial as lost: settling here would hide it.
            was_counted = self._run_trial(trial)
            self.budget.finished(counted=was_counted)
            counted += was_counted
        if self.stop.reason == STOPPED_REASON:  # hpo stop --now, seen by the heartbeat
            self.events.emit("study_done", reason=self._stopped_reason(), stopped=self.stopped)
        return counted

    def _load_data(self) -> None:
        """Load the dataset onto the device once, before the first trial, so that no trial's
        duration includes it."""
        from hpo import data

        self.events.emit("loading_data")
        dataset = data.dataset_of(self.definition, synthetic=self.spec.synthetic)
        data.load_splits(dataset, Path(self.spec.data_dir), device=self.device,
                         options=self.spec.options)

    def _study_is_done(self) -> bool:
        """Whether the study needs no more trials; says why once, to the log and the launcher."""
        why = self._why_done()
        if why is not None:
            log.info("%s: %s.", self.label, why)
            # The stop mark too, when that is why: the launch's summary says who and when.
            self.events.emit("study_done", reason=why,
                             **({"stopped": self.stopped} if self.stopped else {}))
        return why is not None

    def _why_done(self) -> str | None:
        spec = self.spec
        if self._stop_mark() is not None:
            return self._stopped_reason()
        if spec.deadline is not None and time.time() >= spec.deadline:
            ended = datetime.fromtimestamp(spec.deadline).strftime("%H:%M:%S")
            return f"the launch's --timeout ran out at {ended}"
        if isinstance(self.sampler, optuna.samplers.GridSampler) \
                and self.sampler.is_exhausted(self.study):
            return "every point of the grid has been tried"
        if spec.patience is not None and patience_spent(
                self.study.get_trials(deepcopy=False), spec.patience,
                maximize=self.definition.maximize):
            return (f"{spec.patience} finished trials in a row brought no new best "
                    "(--patience)")
        if self._total_reached() and self._wait_for_running():
            return f"the study holds its total of {spec.total} trials"
        return None

    def _wait_for_running(self) -> bool:
        """With the total reached only by counting RUNNING trials, wait until they end:
        True once the finished trials alone hold the total, False if one of them was lost
        (failed as stale and queued again), so that this worker runs its retry. Without
        this a machine lost near the end left the study short, its retry WAITING."""
        assert self.spec.total is not None
        said = False
        while not self.stop.requested:
            trials = self.study.get_trials(deepcopy=False)
            finished = counted_finished(trials)
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            if finished >= self.spec.total:
                return True
            if finished + len(running) < self.spec.total:
                return False
            if not said:
                log.info("%s: waiting for trial(s) %s to end: the study's total counts them, "
                         "and one whose worker is gone is run again.", self.label,
                         ", ".join(map(str, running)))
                said = True
            fail_stale_trials(self.storage, self.study, grace=self.spec.grace_period)
            time.sleep(self.spec.heartbeat_interval)
        return True

    def _stop_mark(self, *, retry: bool = True) -> dict[str, Any] | None:
        """The study's stop mark (hpo stop), as this worker last saw it or as it is now.

        ``retry``: through an outage, as the trial loop's calls do; the heartbeat thread
        reads without (it tries again next interval)."""
        if self.stopped is None:
            storage = self.storage if retry else self.storage.rdb
            self.stopped = stop_mark(storage.get_study_user_attrs(
                _optuna.study_id_of(self.study)))
        return self.stopped

    def _stopped_reason(self) -> str:
        return f"the study was {describe_stop(self.stopped or {})} (hpo stop)"

    def _on_beat(self) -> None:
        """In the heartbeat thread, once per interval: see a stop mark, and interrupt the
        trial if it says --now."""
        self.presence.write(retry=False)
        mark = self._stop_mark(retry=False)
        if mark is not None and mark.get("now") and self.stop.reason is None:
            self.stop.interrupt(STOPPED_REASON)

    def _total_reached(self) -> bool:
        if self.spec.total is None:
            return False
        trials = self.study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return counted_finished(trials) + running >= self.spec.total

    def _ask(self) -> optuna.Trial | None:
        """The next trial, or None if the study already holds its ``--total``.

        The check above is a cheap early exit but can race with peers; this one is exact: the
        count and the new trial are made in one transaction under the study's database lock,
        retried whole if the database drops mid-way.
        """
        if self.spec.total is None:
            return self.study.ask()

        def locked_ask() -> optuna.Trial | None:
            with study_lock(self.storage, _optuna.study_id_of(self.study)):
                return None if self._total_reached() else self.study.ask()

        return call_with_db_retry(locked_ask, tolerance=self.spec.outage_tolerance,
                                  url=self.spec.storage_url)

    # -- one trial --------------------------------------------------------------------------

    def _run_trial(self, trial: optuna.Trial) -> bool:
        """Run one trial to an end. Returns whether it counts against the budget: a trial that
        another worker failed by heartbeat does not (its retry will)."""
        number = trial.number
        self.events.emit("trial_started", trial=number,
                         baseline=bool(trial.user_attrs.get(BASELINE_ATTR)))
        self.presence.on(number)

        def on_epoch(epoch: int, value: float) -> None:
            self.presence.on(number, epoch, value)  # written with the next heartbeat
            self.events.emit("epoch", trial=number, epoch=epoch, value=value)

        run = TrialRun(trial, self.definition, self.spec, device=self.device,
                       on_epoch=on_epoch, retry_of=self._retry_of(trial))
        state, value, reason = TrialState.FAIL, None, None
        interrupted = False
        try:
            # The first heartbeat goes out at once: a trial without one is failed as an orphan.
            with Heartbeat(self.storage, _optuna.trial_id_of(trial),
                           self.spec.heartbeat_interval, on_beat=self._on_beat):
                trial.set_user_attr("device", self.slot.device)
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
                # Where the worker came from (a Slurm job and array task, a Kubernetes pod):
                # its presence record goes when it exits, the trial keeps this.
                trial.set_user_attr(ORIGIN_ATTR, self.presence.record["origin"])
                trial.set_user_attr("seed", run.seed)
                with self.stop.interruptible():
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
        except DatabaseUnreachable:
            raise  # not this trial's fault: it ends the worker (and the launch)
        except KeyboardInterrupt:
            if not self.stop.requested:
                # Raised by the objective itself, not by a signal (StopRequest sets
                # requested first): the user's code, which fails only its trial.
                reason = "the objective raised KeyboardInterrupt"
            else:
                interrupted = True
                reason = self.stop.reason or f"{INTERRUPTED_REASON}: the worker was asked to stop"
        except SystemExit as error:  # sys.exit() in the objective ends its trial, not the worker
            reason = f"the objective called sys.exit({error.code!r})"
        except Exception as error:  # anything inside a trial fails only that trial
            reason = first_line(error, typed=True, limit=500)
            if _is_out_of_memory(error):
                reason = "CUDA out of memory: " + reason
        finally:
            run.checkpoint_model = None
            # An exception's traceback keeps the trial's frames (model, optimizer, batches)
            # alive in reference cycles; only the cycle collector frees them. It costs ~0.2 s,
            # so trials that ended normally skip it.
            _free_memory(self.device, collect=state != TrialState.COMPLETE)
            self.presence.on(None)

        if interrupted:
            return self._interrupted(trial, run, reason or INTERRUPTED_REASON)
        try:
            self._record_progress(trial, run)
            self._tell(trial, state, value, reason)
        except UpdateFinishedTrialError:
            return self._abandoned(number)
        run.discard_resume_point()  # no retry follows a trial whose end the worker recorded
        self.events.emit("trial_finished", trial=number, state=state.name, value=value,
                         reason=reason)
        # Not retried through an outage: the note is a view, refreshed again at the next end.
        note.refresh(self.study, self.storage.rdb)
        if state == TrialState.FAIL:
            log.warning("%s: trial %d failed: %s", self.label, number, reason)
        return True

    def _interrupted(self, trial: optuna.Trial, run: TrialRun, reason: str) -> bool:
        """End a trial that a signal (Ctrl-C; SIGTERM from Kubernetes, Slurm or a user) or
        hpo stop --now interrupted: FAIL with ``reason``, and queued again with the same
        params, so that the next worker, here or on any machine, resumes it from the resume
        point it keeps. It does not count: its retry will. Preemption is routine on a shared
        cluster, and the signal does not say whether the job comes back, so no interrupted
        trial is lost, whoever stops it."""
        self.stop.requested = True
        self._record_progress(trial, run)
        fail_and_retry(self.storage, self.study, _optuna.trial_id_of(trial), reason)
        state = "STOPPED" if reason == STOPPED_REASON else "INTERRUPTED"
        self.events.emit("trial_finished", trial=trial.number, state=state, value=None,
                         reason=reason)
        return False

    def _retry_of(self, trial: optuna.Trial) -> int | None:
        """The trial that ``trial`` retries (the first of a chain of retries), or None; its
        resume point is where the retry goes on from."""
        from hpo.train.resume import original_trial_number

        return original_trial_number(self.storage.get_trial(_optuna.trial_id_of(trial)))

    @staticmethod
    def _record_progress(trial: optuna.Trial, run: TrialRun) -> None:
        # Once per trial rather than per epoch: each write is a database transaction.
        trial.set_user_attr(EPOCHS_RUN_ATTR, run.epochs_run)
        if run.seconds_per_epoch is not None:
            trial.set_user_attr(SECONDS_PER_EPOCH_ATTR, run.seconds_per_epoch)

    def _tell(self, trial: optuna.Trial, state: TrialState, value: float | None,
              reason: str | None) -> None:
        if state == TrialState.FAIL and reason:
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
        elif state == TrialState.PRUNED and reason:
            trial.set_user_attr(PRUNED_REASON_ATTR, reason)
        try:
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except (UpdateFinishedTrialError, ValueError) as error:
            # A retried write may have landed before the connection dropped; only a trial
            # that someone else finished is a real conflict.
            frozen = self.storage.get_trial(_optuna.trial_id_of(trial))
            if frozen.state != state:
                raise UpdateFinishedTrialError(
                    f"trial {trial.number} was finished elsewhere") from error

    def _abandoned(self, number: int) -> bool:
        log.warning("%s: trial %d was failed by another worker (its heartbeat looked stale); "
                    "dropping it and carrying on.", self.label, number)
        self.events.emit("trial_finished", trial=number, state="ABANDONED", value=None,
                         reason="failed by another worker's heartbeat check")
        return False

    def _save_checkpoint(self, trial: optuna.Trial, run: TrialRun, value: float) -> None:
        if self.checkpoints is None or run.checkpoint_model is None:
            return
        try:
            self.checkpoints.offer(trial, run.checkpoint_model, value)
        except Exception as error:  # a full disk must not cost the trial its result
            log.warning("%s: could not save the checkpoint of trial %d: %s", self.label,
                        trial.number, first_line(error, typed=True, limit=500))


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
