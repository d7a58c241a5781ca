"""Supervision: one worker process per plan slot on one study, watched over by the launcher.

The supervisor holds the trial budget in shared memory (hpo.run.budget), so ``--trials N`` means
exactly N trials run to an end whatever the number of workers. It forwards Ctrl-C and SIGTERM to
its workers (a second Ctrl-C kills them), restarts a worker that dies, and fails and re-queues
the trial a dead worker was running. Before it returns it also fails any trial of the study left
RUNNING by a worker that is gone (hpo.run.stale), so nothing is left RUNNING. Workers die with
their launcher (:func:`die_with_parent`), so a relaunch never runs beside orphans. A database
that stays unreachable for the outage tolerance ends every worker and the launch with one
sentence (:class:`~hpo.storage.retry.DatabaseUnreachable`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from hpo import _optuna, logs, registry
from hpo.errors import HpoError
from hpo.run.budget import SharedBudget, SharedState
from hpo.run.channel import Channel, receive
from hpo.run.stale import fail_and_retry, fail_stale_trials, settle_running_trials
from hpo.spec import LaunchSpec, WorkerSlot
from hpo.storage.attributes import LOST_REASON
from hpo.storage.retry import DatabaseUnreachable, ResilientStorage, is_connection_error

log = logging.getLogger(__name__)

# A slot whose worker keeps dying is given up after this many restarts.
MAX_RESTARTS_PER_SLOT = 3
# The pause before a slot's first restart, doubled for each further one (2, 4, 8 s): a cause
# that passes (a database restarting, a busy machine) gets time to pass before the restarts
# are spent.
RESTART_BACKOFF_SECONDS = 2.0
# After the first Ctrl-C, workers get this long to fail or finish their trial.
GRACEFUL_STOP_SECONDS = 60.0
EXIT_INTERRUPTED = 130
# A worker that gave up on the database exits with this code (and sends the sentence first).
EXIT_DATABASE_LOST = 4
# Once the database is lost, the other workers get this long to stop before they are killed:
# they cannot mark their trials anyway, and waiting for them would double the launch's wait.
DATABASE_LOST_STOP_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, *, use_prctl: bool = True) -> None:
    """Make this process die when ``parent_pid``, its parent, does.

    On Linux the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); where
    that is unavailable a daemon thread watches the parent and kills this process when it is
    gone. Either way a launcher killed with SIGKILL leaves no worker behind to run beside the
    next launch; their trials are failed by the next launch's stale check."""
    if use_prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # it died before prctl took effect
                    os.kill(os.getpid(), signal.SIGKILL)
                return
        except (OSError, AttributeError, TypeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="hpo-parent-watch",
                     daemon=True).start()


def _watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGKILL)


class Display(Protocol):
    """What the launcher shows of its workers (hpo.run.progress.LaunchProgress), while
    ``with`` it."""

    def __enter__(self) -> Display: ...

    def __exit__(self, *exc: object) -> None: ...

    def handle(self, index: int, kind: str, fields: dict[str, Any]) -> None: ...

    def worker_exited(self, index: int, exitcode: int | None) -> None: ...

    def worker_restarted(self, index: int) -> None: ...


class NoDisplay:
    def __enter__(self) -> NoDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def handle(self, index: int, kind: str, fields: dict[str, Any]) -> None:
        pass

    def worker_exited(self, index: int, exitcode: int | None) -> None:
        pass

    def worker_restarted(self, index: int) -> None:
        pass


def _worker_process(spec: LaunchSpec, slot: WorkerSlot, restarts: int, state: SharedState,
                    connection: Connection, parent_pid: int) -> None:
    """Entry point of a worker process (spawned, so it starts with a clean CUDA state)."""
    # Imported here, in the worker, and not at the top: the launcher process never needs torch,
    # and importing it there would delay every launch by seconds.
    from hpo.run.worker import StopRequest, Worker

    die_with_parent(parent_pid)
    stop = StopRequest()
    stop.install()
    channel = Channel(connection)
    logs.to_queue(channel)
    try:
        import torch

        torch.set_num_threads(slot.threads)
        definition = registry.resolve(spec.study).definition  # the reference crossed over
        worker = Worker(spec, definition, slot, budget=SharedBudget(state, slot.index),
                        events=channel, stop=stop, restarts=restarts)
        worker.run()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except DatabaseUnreachable as error:
        channel.emit("database_lost", message=str(error))
        sys.exit(EXIT_DATABASE_LOST)
    except HpoError as error:
        log.error("%s: %s", slot.label, error)
        sys.exit(3)
    except Exception:
        log.exception("%s crashed", slot.label)
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
    trials: list[int] = field(default_factory=list)  # numbers of the trials its workers ran
    done: str | None = None  # why the study needed no more trials, as a worker found it
    stopped: dict[str, Any] | None = None  # the study's stop mark (hpo stop), if that was why


class Supervisor:
    def __init__(self, *, storage: ResilientStorage, study: optuna.Study, spec: LaunchSpec,
                 budget: int | None, display: Display | None = None) -> None:
        self.storage = storage
        self.study = study
        self.spec = spec
        self.slots = list(spec.slots)
        self.display: Display = display or NoDisplay()
        self.trials: set[int] = set()  # the trials its workers started, as they report them
        self.ctx = multiprocessing.get_context("spawn")
        self.state = SharedState(self.ctx, len(self.slots), budget)
        self.channels: dict[int, Connection] = {}  # each worker's pipe (hpo.run.channel)
        self.processes: dict[int, Any] = {}
        self.restarts = {slot.index: 0 for slot in self.slots}
        self.failed_slots: list[int] = []
        self.signals = 0
        self.database_lost: str | None = None  # the sentence of the first worker to give up
        self.done: str | None = None  # why the first worker to find the study done stopped
        self.stopped: dict[str, Any] | None = None  # the stop mark a worker obeyed
        self.restart_at: dict[int, float] = {}  # slots waiting out their restart's pause

    # -- processes --------------------------------------------------------------------------

    def _start(self, slot: WorkerSlot) -> None:
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(target=_worker_process, name=f"hpo-{slot.label}",
                                   args=(self.spec, slot, self.restarts[slot.index], self.state,
                                         writer, os.getpid()), daemon=False)
        try:
            with _child_environment(slot):
                process.start()
        finally:
            writer.close()  # the child has its own: the pipe ends when the child does
        self._close_channel(slot.index)
        self.channels[slot.index] = reader
        self.processes[slot.index] = process

    def _close_channel(self, index: int) -> None:
        channel = self.channels.pop(index, None)
        if channel is not None:
            channel.close()

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
        try:
            self._watch()
        except DatabaseUnreachable as error:  # the launcher's own storage call gave up
            self.database_lost = self.database_lost or str(error)
        except BaseException:
            self._kill_all()
            self._fail_orphans("the launcher stopped")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._kill_all()  # only if the loop itself failed
        self._settle()
        if self.database_lost:
            raise DatabaseUnreachable(self.database_lost)
        return SuperviseResult(self.state.counted.value, self.signals > 0, self.failed_slots,
                               sorted(self.trials), self.done, self.stopped)

    def _watch(self) -> None:
        stop_deadline: float | None = None
        for slot in self.slots:
            self._start(slot)
        while self.processes or self.restart_at:
            self._drain_events(timeout=0.2)
            if self.signals or self.database_lost:
                self.restart_at.clear()
            for index, when in list(self.restart_at.items()):
                if time.monotonic() >= when:
                    del self.restart_at[index]
                    self._start(next(s for s in self.slots if s.index == index))
            if self.signals and stop_deadline is None:
                stop_deadline = time.monotonic() + GRACEFUL_STOP_SECONDS
            if self.database_lost and stop_deadline is None:
                self._stop_workers()
                stop_deadline = time.monotonic() + DATABASE_LOST_STOP_SECONDS
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

    def _kill_all(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.join()
        self.processes.clear()
        for index in list(self.channels):
            self._close_channel(index)

    def _stop_workers(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def _settle(self) -> None:
        """Leave no trial RUNNING without a live heartbeat: first those of this launch's dead
        workers, then any other the study holds (a launch killed just before this one)."""
        if self.database_lost:
            # One try each, no waiting: what cannot be marked now, the next launch fails.
            saved, self.storage.outage_tolerance = self.storage.outage_tolerance, 0.0
            try:
                self._fail_orphans("the database became unreachable")
            except Exception as error:
                if not is_connection_error(error) and not isinstance(error, DatabaseUnreachable):
                    raise
                log.debug("Could not mark the trials of the stopped workers: %s", error)
            finally:
                self.storage.outage_tolerance = saved
            return
        self._fail_orphans("the launcher stopped")
        if self.signals:  # the user asked to stop: fail what is already stale, wait for nothing
            fail_stale_trials(self.storage, self.study, grace=self.spec.grace_period)
        else:
            settle_running_trials(self.storage, self.study, grace=self.spec.grace_period,
                                  interval=self.spec.heartbeat_interval)

    def _receive(self, timeout: float, only: int | None = None) -> list[tuple[int, Any]]:
        """What the workers (or worker ``only``) sent, waiting up to ``timeout`` for the first
        of it; a worker's pipe is dropped once it is gone and read to its end."""
        by_reader = {reader: index for index, reader in self.channels.items()
                     if only is None or index == only}
        if not by_reader:
            time.sleep(timeout)
            return []
        received = []
        ready = wait(list(by_reader), timeout)
        for reader, index in by_reader.items():
            if reader not in ready:
                continue
            try:
                received += [(index, item) for item in receive(reader)]
            except (EOFError, OSError, pickle.UnpicklingError):
                self._close_channel(index)
        return received

    def _drain_events(self, timeout: float, only: int | None = None) -> None:
        for index, item in self._receive(timeout, only):
            if isinstance(item, logging.LogRecord):
                logging.getLogger(item.name).handle(item)
                continue
            _, kind, fields = item
            if kind == "database_lost":
                self.database_lost = self.database_lost or fields["message"]
                continue
            if kind == "study_done":
                self.done = self.done or fields["reason"]
                self.stopped = self.stopped or fields.get("stopped")
                continue
            if "trial" in fields:
                self.trials.add(fields["trial"])
            self.display.handle(index, kind, fields)

    def _after_exit(self, index: int, exitcode: int) -> None:
        died = exitcode != 0
        if exitcode == EXIT_DATABASE_LOST or self.database_lost:
            self._drain_events(timeout=0.5, only=index)  # its sentence, if not read yet
            self.database_lost = self.database_lost or "The database became unreachable."
            self.display.worker_exited(index, exitcode)
            return  # no restart: _settle marks what it can, once
        if died:
            self._recover_slot(index, f"its worker process exited with code {exitcode}")
        self.display.worker_exited(index, exitcode)
        slot = next(s for s in self.slots if s.index == index)
        budget_left = self.state.remaining.value != 0
        if died and budget_left and not self.signals:
            if self.restarts[index] < MAX_RESTARTS_PER_SLOT and exitcode != 3:
                self.restarts[index] += 1
                pause = RESTART_BACKOFF_SECONDS * 2 ** (self.restarts[index] - 1)
                log.warning("%s exited with code %s; restarting it (%d/%d) in %g s.",
                            slot.label, exitcode, self.restarts[index], MAX_RESTARTS_PER_SLOT,
                            pause)
                self.display.worker_restarted(index)
                self.restart_at[index] = time.monotonic() + pause
            else:
                self.failed_slots.append(index)

    def _recover_slot(self, index: int, why: str) -> None:
        """Settle the budget unit and trial of a worker that died without doing so itself.
        Its trial is queued again even when a second Ctrl-C killed the worker, as an
        interrupted trial is (hpo.run.worker.Worker._interrupted): the next launch resumes it."""
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
        self.trials.add(trial.number)  # its worker may have died before saying it started it
        if trial.state != TrialState.RUNNING:
            # It told its result and died before reporting that: the trial counts.
            with self.state.lock:
                self.state.counted.value += 1
            return
        fail_and_retry(self.storage, self.study, _optuna.trial_id_of(trial),
                       f"{LOST_REASON}: {why}")
        with self.state.lock:
            self.state.refund()
        self.display.handle(index, "trial_finished",
                             {"trial": trial.number, "state": "ABANDONED", "value": None})

    def _fail_orphans(self, why: str) -> None:
        for index in range(len(self.slots)):
            self._recover_slot(index, why)
