"""The launcher: start one worker process per plan slot on one study, and watch over them.

The launcher holds the trial budget in shared memory, so ``--trials N`` means exactly N trials
run to an end (complete, pruned or failed) whatever the number of workers. It forwards Ctrl-C
and SIGTERM to its workers (a second Ctrl-C kills them), restarts a worker that dies, and fails
and re-queues the trial a dead worker was running, so nothing is left RUNNING when it returns.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.devices import WorkerSlot
from hpo.errors import HpoError
from hpo.progress import LaunchProgress
from hpo.storage import ResilientStorage
from hpo.worker import FAIL_REASON_ATTR, StopRequest, Worker, WorkerConfig

log = logging.getLogger(__name__)

# A slot whose worker keeps dying is given up after this many restarts.
MAX_RESTARTS_PER_SLOT = 3
# After the first Ctrl-C, workers get this long to fail or finish their trial.
GRACEFUL_STOP_SECONDS = 60.0
EXIT_INTERRUPTED = 130


class SharedState:
    """Budget and bookkeeping shared by the launcher and its workers (in shared memory)."""

    UNLIMITED = -1

    def __init__(self, ctx: Any, slots: int, budget: int | None) -> None:
        self.lock = ctx.Lock()
        self.remaining = ctx.Value("q", self.UNLIMITED if budget is None else budget, lock=False)
        self.counted = ctx.Value("q", 0, lock=False)
        self.holding = ctx.Array("b", slots, lock=False)  # slot holds a claimed budget unit
        self.trial_ids = ctx.Array("q", [-1] * slots, lock=False)  # trial the slot is running

    def refund(self) -> None:
        if self.remaining.value != self.UNLIMITED:
            self.remaining.value += 1


class SharedBudget:
    """A worker's view of the launch's budget (see hpo.worker.Budget)."""

    def __init__(self, state: SharedState, index: int) -> None:
        self.state = state
        self.index = index

    def claim(self) -> bool:
        with self.state.lock:
            remaining = self.state.remaining
            if remaining.value == 0:
                return False
            if remaining.value != SharedState.UNLIMITED:
                remaining.value -= 1
            self.state.holding[self.index] = 1
            return True

    def started(self, trial_id: int) -> None:
        with self.state.lock:
            self.state.trial_ids[self.index] = trial_id

    def finished(self, *, counted: bool) -> None:
        with self.state.lock:
            if counted:
                self.state.counted.value += 1
            else:
                self.state.refund()
            self.state.holding[self.index] = 0
            self.state.trial_ids[self.index] = -1


class QueueEvents:
    def __init__(self, events: Any, index: int) -> None:
        self.events = events
        self.index = index

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.put(("event", self.index, kind, fields))


def _worker_process(config: WorkerConfig, slot: WorkerSlot, state: SharedState,
                    events: Any) -> None:
    """Entry point of a worker process (spawned, so it starts with a clean CUDA state)."""
    stop = StopRequest()
    stop.install()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(events)]
    root.setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    try:
        import torch

        torch.set_num_threads(slot.threads)
        worker = Worker(config, budget=SharedBudget(state, slot.index),
                        events=QueueEvents(events, slot.index), stop=stop)
        worker.run()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except HpoError as error:
        log.error("%s: %s", config.label, error)
        sys.exit(3)
    except Exception:
        log.exception("%s crashed", config.label)
        sys.exit(1)


@contextlib.contextmanager
def _child_environment(slot: WorkerSlot) -> Iterator[None]:
    """Set the environment a worker process starts with.

    CUDA_VISIBLE_DEVICES must be in place before CUDA initialises in the child, and the
    thread counts before OpenMP does; both happen at import time, so they are set in the
    environment the child is spawned with rather than from inside it.
    """
    wanted = {
        "CUDA_VISIBLE_DEVICES": slot.cuda_visible_devices,
        "OMP_NUM_THREADS": str(slot.threads),
        "MKL_NUM_THREADS": str(slot.threads),
    }
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class SuperviseResult:
    counted: int
    interrupted: bool
    failed_slots: list[int]


class Supervisor:
    def __init__(self, *, storage: ResilientStorage, study: optuna.Study, config: WorkerConfig,
                 slots: list[WorkerSlot], budget: int | None, progress: LaunchProgress) -> None:
        self.storage = storage
        self.study = study
        self.config = config
        self.slots = slots
        self.progress = progress
        self.ctx = multiprocessing.get_context("spawn")
        self.state = SharedState(self.ctx, len(slots), budget)
        self.events = self.ctx.Queue()
        self.processes: dict[int, Any] = {}
        self.restarts = {slot.index: 0 for slot in slots}
        self.failed_slots: list[int] = []
        self.signals = 0

    # -- processes --------------------------------------------------------------------------

    def _start(self, slot: WorkerSlot) -> None:
        device = "cpu" if slot.device == "cpu" else "cuda:0"  # the child sees only its GPU
        config = replace(self.config, label=slot.label, device_label=slot.device,
                         run=replace(self.config.run, device=device),
                         sampler_seed=None if self.config.sampler_seed is None
                         else self.config.sampler_seed + slot.index + 1000 * self.restarts[slot.index])
        process = self.ctx.Process(target=_worker_process, name=f"hpo-{slot.label}",
                                   args=(config, slot, self.state, self.events), daemon=False)
        with _child_environment(slot):
            process.start()
        self.processes[slot.index] = process

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            log.warning("Stopping: workers fail or finish their current trial. "
                        "Press Ctrl-C again to stop at once.")
            for process in self.processes.values():
                if process.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGTERM)
        else:
            for process in self.processes.values():
                if process.is_alive():
                    process.kill()

    # -- the watch loop ---------------------------------------------------------------------

    def run(self) -> SuperviseResult:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        stop_deadline: float | None = None
        try:
            for slot in self.slots:
                self._start(slot)
            while self.processes:
                self._drain_events(timeout=0.2)
                if self.signals and stop_deadline is None:
                    stop_deadline = time.monotonic() + GRACEFUL_STOP_SECONDS
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    for process in self.processes.values():
                        process.kill()
                for index, process in list(self.processes.items()):
                    if process.exitcode is None:
                        continue
                    process.join()
                    del self.processes[index]
                    self._after_exit(index, process.exitcode)
            self._drain_events(timeout=0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for process in self.processes.values():  # only if the loop itself failed
                process.kill()
                process.join()
            self._fail_orphans("the launcher stopped")
        return SuperviseResult(self.state.counted.value, self.signals > 0, self.failed_slots)

    def _drain_events(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if isinstance(item, logging.LogRecord):
                logging.getLogger(item.name).handle(item)
            else:
                _, index, kind, fields = item
                self.progress.handle(index, kind, fields)

    def _after_exit(self, index: int, exitcode: int) -> None:
        died = exitcode != 0
        if died:
            # A worker killed by a second Ctrl-C is not retried: the user asked to stop.
            self._recover_slot(index, f"its worker process exited with code {exitcode}",
                               retry=not self.signals)
        self.progress.worker_exited(index, exitcode)
        slot = next(s for s in self.slots if s.index == index)
        budget_left = self.state.remaining.value != 0
        if died and budget_left and not self.signals:
            if self.restarts[index] < MAX_RESTARTS_PER_SLOT and exitcode != 3:
                self.restarts[index] += 1
                log.warning("%s exited with code %s; restarting it (%d/%d).", slot.label,
                            exitcode, self.restarts[index], MAX_RESTARTS_PER_SLOT)
                self.progress.worker_restarted(index)
                self._start(slot)
            else:
                self.failed_slots.append(index)

    def _recover_slot(self, index: int, why: str, *, retry: bool = True) -> None:
        """Settle the budget unit and trial of a worker that died without doing so itself."""
        with self.state.lock:
            trial_id = self.state.trial_ids[index]
            holding = self.state.holding[index]
            self.state.trial_ids[index] = -1
            self.state.holding[index] = 0
            if trial_id < 0:
                if holding:
                    self.state.refund()
                return
        trial = self.storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            # It told its result and died before reporting that: the trial counts.
            with self.state.lock:
                self.state.counted.value += 1
            return
        self._fail_trial(trial, why, retry=retry)
        with self.state.lock:
            self.state.refund()
        self.progress.handle(index, "trial_finished",
                             {"trial": trial.number, "state": "ABANDONED", "value": None})

    def _fail_trial(self, trial: optuna.trial.FrozenTrial, why: str, *, retry: bool) -> None:
        """Fail a trial whose worker is gone, and queue it again with the same params.

        This is what the heartbeat check would do after the grace period; the launcher saw the
        process die, so it does it at once.
        """
        try:
            self.storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR,
                                             f"worker lost: {why}")
            if not self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        log.warning("Trial %d failed: %s.", trial.number, why)
        callback = self.storage.get_heartbeat_stale_trial_callback()
        if retry and callback is not None:
            callback(self.study, self.storage.get_trial(trial._trial_id))
            log.warning("Trial %d queued again with the same params.", trial.number)

    def _fail_orphans(self, why: str) -> None:
        for index in range(len(self.slots)):
            self._recover_slot(index, why, retry=not self.signals)


# -- launching a study ---------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRequest:
    """What ``hpo launch`` and ``hpo worker`` resolved from their flags."""

    definition_name: str
    study_name: str
    storage_url: str
    slots: list[WorkerSlot]
    trials: int | None  # None: no limit of this launch's own (hpo worker)
    sampler: str
    pruner: str
    epochs: int
    seed: int
    synthetic: bool
    data_dir: str
    options: dict[str, Any]
    total: int | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    artifact_dir: str | None = None
    keep_checkpoints: int = 3
    mixed_precision: bool = True


def prepare_launch(request: LaunchRequest, storage: ResilientStorage
                   ) -> tuple[optuna.Study, bool, int | None, str | None]:
    """Check the data and the study, then create or resume it. Returns the study, whether it
    was created, the budget and a note for the user. Nothing is written before every check
    has passed."""
    import studies
    from hpo import data, study_store

    definition = studies.get(request.definition_name)
    data.prepare(definition.dataset, Path(request.data_dir), request.synthetic)
    if definition.check_ready is not None:
        definition.check_ready(request.options)
    study, created = study_store.create_or_resume(
        storage, definition, request.study_name, synthetic=request.synthetic,
        config=launch_record(request),
    )
    budget, note = request.trials, None
    if request.sampler == "grid" and definition.grid_size is not None:
        visited = {t.system_attrs["grid_id"] for t in study.get_trials(deepcopy=False)
                   if "grid_id" in t.system_attrs and t.state.is_finished()}
        left = definition.grid_size - len(visited)
        if budget is None or budget > left:
            if budget is not None:
                note = (f"The grid of {definition.name} has {left} untried point(s) left, so "
                        f"this launch runs {left} trial(s), not {budget}.")
            budget = left
    return study, created, budget, note


def launch_record(request: LaunchRequest) -> dict[str, Any]:
    """The settings stored on the study, so that workers joining later train the same way."""
    return {
        "sampler": request.sampler, "pruner": request.pruner, "epochs": request.epochs,
        "seed": request.seed, "synthetic": request.synthetic, "options": request.options,
        "total": request.total,
    }


def run_launch(request: LaunchRequest, storage: ResilientStorage, *, study: optuna.Study,
               budget: int | None, progress: LaunchProgress) -> SuperviseResult:
    from hpo.trial_run import RunSettings

    config = WorkerConfig(
        storage_url=request.storage_url, study_name=request.study_name,
        definition=request.definition_name, sampler=request.sampler, pruner=request.pruner,
        run=RunSettings(device="cpu", epochs=request.epochs, data_dir=request.data_dir,
                        synthetic=request.synthetic, options=request.options, seed=request.seed,
                        mixed_precision=request.mixed_precision),
        sampler_seed=request.seed, heartbeat_interval=request.heartbeat_interval,
        grace_period=request.grace_period, total=request.total,
        artifact_dir=request.artifact_dir, keep_checkpoints=request.keep_checkpoints,
    )
    if budget == 0:
        return SuperviseResult(0, False, [])
    with progress:
        return Supervisor(storage=storage, study=study, config=config, slots=request.slots,
                          budget=budget, progress=progress).run()
