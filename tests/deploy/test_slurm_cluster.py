"""deploy/slurm on a real (throwaway, single-node) Slurm cluster: the shipped hpo-worker.sbatch,
unchanged, as a job array on a PostgreSQL study; Slurm's faults (scancel, requeue, SIGKILL);
postgres.sbatch; and hpo stop --now under Slurm.

Only the environment and sbatch's own flags differ from a real cluster's use: one CPU per task
(the node's 2 CPUs are shared by 4 tasks), a little memory, output in the test's folder, and
PATH with this checkout's hpo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.run.budget import counted
from hpo.storage.attributes import FAIL_REASON_ATTR, ORIGIN_ATTR, RESUMED_FROM_ATTR
from tests.helpers import make_spec, running_trials, wait_for
from tests.postgres import PASSWORD
from tests.slurm import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = ROOT / "deploy" / "slurm" / "hpo-worker.sbatch"
BIN = str(Path(sys.executable).parent)  # where uv put the hpo command
STUDY = "mnist-mlp"


def create_study(url: str, data_dir: Path, *, epochs: int) -> None:
    """The study the array joins, with the spec a launch records (its workers read it back):
    the small real-format MNIST, ``epochs`` epochs, random search, no pruning."""
    from hpo.run import launch

    launch.prepare(launch.Plan.of(make_spec(url, STUDY, trials=1, epochs=epochs, seed=1,
                                            data_dir=str(data_dir), sampler="random",
                                            pruner="none")))


def storage_file(folder: Path, url: str) -> Path:
    """The storage URL in a file only its owner reads, as the shipped script expects it."""
    path = folder / "storage-url"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(url + "\n")
    return path


def submit_workers(cluster: SlurmCluster, folder: Path, url: str, *worker_args: str,
                   total: int, array: str = "0-3", sbatch_args: tuple[str, ...] = ()) -> str:
    """``sbatch --array`` of the shipped script; its extra arguments go to ``hpo worker``."""
    env = cluster.env(PATH=f"{BIN}:{os.environ['PATH']}", HOME=str(folder),
                      HPO_STORAGE_FILE=str(storage_file(folder, url)), HPO_STUDY=STUDY,
                      HPO_TOTAL=str(total))
    assert "HPO_STORAGE" not in env
    return cluster.sbatch(f"--array={array}", "--cpus-per-task=1", "--mem=500M",
                          f"--output={folder}/hpo-worker-%A_%a.out", f"--chdir={folder}",
                          *sbatch_args, str(WORKER_SCRIPT), *worker_args, env=env)


class Watch:
    """What anyone on the machine could read while the array runs: every process's command
    line (``ps -eo args``) and Slurm's view of the job, sampled in a thread."""

    def __init__(self, cluster: SlurmCluster, job: str) -> None:
        self.cluster, self.job = cluster, job
        self.seen: list[str] = []
        self.workers_seen = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                text=True).stdout
            # This checkout's hpo worker, started by the array's script.
            self.workers_seen |= f"{BIN}/hpo worker {STUDY}" in ps
            self.seen.append(ps)
            for command in (("squeue", "-o", "%all"), ("scontrol", "-d", "show", "job",
                                                         self.job)):
                self.seen.append(self.cluster.run(*command, check=False).stdout)
            self._done.wait(0.5)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def task_records(cluster: SlurmCluster, job: str) -> dict[str, dict[str, str]]:
    """Each array task's final record, by task id."""
    return {r["ArrayTaskId"]: r for r in cluster.job_records(job) if "ArrayTaskId" in r}


def output_of(folder: Path, job: str, task: int) -> str:
    return (folder / f"hpo-worker-{job}_{task}.out").read_text()


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=url).get_trials()


def test_array_of_four_fills_the_study_to_its_total(slurm_cluster: SlurmCluster,
                                                     postgres_url: str, mnist_dir: Path,
                                                     tmp_path: Path) -> None:
    create_study(postgres_url, mnist_dir, epochs=3)
    started = time.monotonic()
    job = submit_workers(slurm_cluster, tmp_path, postgres_url, "--data-dir", str(mnist_dir),
                         "--heartbeat-interval", "2", total=12)
    with Watch(slurm_cluster, job) as watch:
        slurm_cluster.wait_until_empty(timeout=400)
    took = time.monotonic() - started
    print(f"an array of 4 ran 12 trials of 3 epochs in {took:.0f} s")

    tasks = task_records(slurm_cluster, job)
    assert sorted(tasks) == ["0", "1", "2", "3"], tasks
    for task, record in tasks.items():
        log = output_of(tmp_path, job, int(task))
        assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), log
        assert f"hpo-worker: task {task} of job {job}" in log
        assert "Traceback" not in log

    trials = trials_of(postgres_url)
    finished = counted(trials)
    assert len(finished) == 12 and len({t.number for t in trials}) == len(trials)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING,
                                                        TrialState.WAITING)]
    assert all(t.state == TrialState.COMPLETE for t in finished), \
        [(t.number, t.state, t.user_attrs) for t in finished]
    # Each of the four tasks ran trials, and the trials say which task ran them.
    assert {t.user_attrs[ORIGIN_ATTR] for t in finished} == {
        f"hpo worker, Slurm job {job} task {task}" for task in range(4)}

    # The password was never on a command line, in Slurm's view of the job or its output.
    assert watch.workers_seen, f"ps never caught a worker running: {watch.seen[-3:]}"
    outputs = [output_of(tmp_path, job, task) for task in range(4)]
    for text in watch.seen + outputs:
        assert PASSWORD not in text


def running_by_task(url: str, job: str, *, min_epochs: int) -> dict[int, optuna.trial.FrozenTrial]:
    """The RUNNING trials past ``min_epochs`` epochs, by the array task that runs them."""
    prefix = f"hpo worker, Slurm job {job} task "
    return {int(t.user_attrs[ORIGIN_ATTR].removeprefix(prefix)): t
            for t in running_trials(url, STUDY, min_epochs=min_epochs)
            if str(t.user_attrs.get(ORIGIN_ATTR, "")).startswith(prefix)}


def test_slurms_faults_end_the_study_at_its_total(slurm_cluster: SlurmCluster,
                                                  postgres_url: str, mnist_dir: Path,
                                                  tmp_path: Path) -> None:
    """One array, one fault per task, each mid-trial: task 1 cancelled (SIGTERM), task 2
    killed outright (SIGKILL), task 3 requeued; task 0 runs on. No trial is lost: each
    interrupted one is run again, from its last epoch, and the study ends at its total."""
    create_study(postgres_url, mnist_dir, epochs=6)
    job = submit_workers(slurm_cluster, tmp_path, postgres_url, "--data-dir", str(mnist_dir),
                         "--heartbeat-interval", "1", "--grace-period", "8", total=12)
    # Each fault as soon as its task's trial is an epoch in, with epochs still to go: tasks
    # reach that at different times, so each is caught on its own.
    faults = {
        # Slurm's SIGTERM, as for a time limit or a plain scancel.
        1: ("scancel", f"{job}_1"),
        # --batch: SIGKILL itself, to the batch script, which is hpo worker (exec); its worker
        # process dies with it. Without --batch (or with --full), Slurm takes --signal=KILL for
        # a cancel: SIGTERM, and SIGKILL only after KillWait.
        2: ("scancel", "--batch", "--signal=KILL", f"{job}_2"),
        3: ("scontrol", "requeue", f"{job}_3"),
    }
    at_fault: dict[int, optuna.trial.FrozenTrial] = {}

    def strike() -> bool:
        for task, trial in running_by_task(postgres_url, job, min_epochs=1).items():
            if task in faults and task not in at_fault and len(trial.intermediate_values) <= 3:
                slurm_cluster.run(*faults[task])
                at_fault[task] = trial
        return len(at_fault) == len(faults)

    wait_for(strike, timeout=300, what="tasks 1-3 to be mid-trial")
    slurm_cluster.wait_until_empty(timeout=400)

    tasks = task_records(slurm_cluster, job)
    logs = {task: output_of(tmp_path, job, task) for task in range(4)}
    trials = trials_of(postgres_url)
    by_number = {t.number: t for t in trials}
    retries = {t.system_attrs.get("failed_trial"): t for t in trials
               if t.system_attrs.get("failed_trial") is not None}
    summary = [(t.number, t.state.name, t.user_attrs.get(ORIGIN_ATTR),
                t.user_attrs.get(FAIL_REASON_ATTR), t.system_attrs.get("failed_trial"),
                t.user_attrs.get(RESUMED_FROM_ATTR)) for t in trials]
    context = f"{summary}\n{tasks}\n{logs}"

    # The study ends at exactly its total, nothing left RUNNING or queued.
    assert len(counted(trials)) == 12, context
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING,
                                                        TrialState.WAITING)], context

    # scancel: Slurm's SIGTERM ends the trial FAIL "interrupted"; it is queued again, does not
    # count, and another task resumes it from its last epoch (artifacts on one shared disk).
    cancelled = by_number[at_fault[1].number]
    assert cancelled.state == TrialState.FAIL, context
    assert cancelled.user_attrs[FAIL_REASON_ATTR].startswith("interrupted"), context
    assert cancelled not in counted(trials), context
    assert_resumed(cancelled, retries[cancelled.number], context)
    assert tasks["1"]["JobState"] == "CANCELLED", context

    # SIGKILL: nothing records the end; the heartbeat check fails the trial and retries it.
    killed = by_number[at_fault[2].number]
    assert killed.state == TrialState.FAIL, context
    assert killed.user_attrs[FAIL_REASON_ATTR].startswith("worker lost: no heartbeat"), context
    assert retries[killed.number].state == TrialState.COMPLETE, context
    assert retries[killed.number].user_attrs[RESUMED_FROM_ATTR] >= \
        len(killed.intermediate_values) >= 1, context
    assert (tasks["2"]["JobState"], tasks["2"]["ExitCode"]) == ("FAILED", "0:9"), context

    # Requeued: the same SIGTERM, so the same retry; the task runs again.
    requeued = by_number[at_fault[3].number]
    assert requeued.user_attrs[FAIL_REASON_ATTR].startswith("interrupted"), context
    assert_resumed(requeued, retries[requeued.number], context)
    assert tasks["3"]["Restarts"] == "1", context
    for task in ("0", "3"):
        assert (tasks[task]["JobState"], tasks[task]["ExitCode"]) == ("COMPLETED", "0:0"), \
            context


def assert_resumed(interrupted: optuna.trial.FrozenTrial, retry: optuna.trial.FrozenTrial,
                   context: str) -> None:
    """``retry`` completed ``interrupted`` from its last epoch saved: the one reported, or one
    more if Slurm's signal came between the save and the report. It reports the curve it
    resumes again, unchanged."""
    assert retry.state == TrialState.COMPLETE, context
    assert retry.params == interrupted.params, context
    assert retry.user_attrs[RESUMED_FROM_ATTR] >= len(interrupted.intermediate_values) >= 1, \
        context
    assert interrupted.intermediate_values.items() <= retry.intermediate_values.items(), context


@pytest.fixture
def postgres_folder():
    """A folder the ``postgres`` user owns, outside the tests' root-only temporary folders:
    postgres.sbatch runs as that user (initdb refuses root)."""
    import shutil
    import tempfile

    from tests.postgres import unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"postgres.sbatch needs PostgreSQL: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="hpo-slurm-db-"))
    shutil.chown(folder, user="postgres", group="postgres")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_job_serves_the_worker_array(slurm_cluster: SlurmCluster, mnist_dir: Path,
                                              postgres_folder: Path, tmp_path: Path) -> None:
    """The README's two lines: postgres.sbatch as a job, then the workers with
    --dependency=after on it, the storage URL passed only through the file the first writes."""
    from tests.postgres import find_binary, free_port

    url_file = postgres_folder / "storage-url"
    pg_bin = str(Path(find_binary("initdb")).parent)
    env = slurm_cluster.env(PATH=f"{pg_bin}:{BIN}:{os.environ['PATH']}",
                            HOME=str(postgres_folder), HPO_DB_DIR=str(postgres_folder / "data"),
                            HPO_DB_PORT=str(free_port()), HPO_STORAGE_FILE=str(url_file),
                            HPO_STUDY=STUDY, HPO_TOTAL="4")
    # As the postgres user, as a real user who is not root runs it (--uid: root only).
    db = slurm_cluster.sbatch("--uid=postgres", "--gid=postgres", "--cpus-per-task=1",
                              "--mem=500M", f"--output={postgres_folder}/postgres-%j.out",
                              f"--chdir={postgres_folder}", str(ROOT / "deploy" / "slurm" /
                                                                 "postgres.sbatch"), env=env)
    job = slurm_cluster.sbatch(f"--dependency=after:{db}", "--array=0-3", "--cpus-per-task=1",
                               "--mem=500M", f"--output={tmp_path}/hpo-worker-%A_%a.out",
                               f"--chdir={tmp_path}", str(WORKER_SCRIPT), "--data-dir",
                               str(mnist_dir), "--heartbeat-interval", "2", env=env)
    try:
        wait_for(lambda: not set(slurm_cluster.jobs()) & {f"{job}_{i}" for i in range(4)}
                 and not any(j.startswith(f"{job}_") for j in slurm_cluster.jobs()),
                 timeout=400, interval=1, what="the worker array to end")
        tasks = task_records(slurm_cluster, job)
        logs = {task: output_of(tmp_path, job, task) for task in range(4)}
        assert {(r["JobState"], r["ExitCode"]) for r in tasks.values()} == {
            ("COMPLETED", "0:0")}, (tasks, logs)
        url = url_file.read_text().strip()
        trials = optuna.load_study(study_name=STUDY, storage=url).get_trials()
        assert len(counted(trials)) == 4, logs
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        password = url.split(":")[2].split("@")[0]
        assert oct(url_file.stat().st_mode & 0o777) == "0o600"
        for text in [*logs.values(), slurm_cluster.run("scontrol", "show", "job", db).stdout]:
            assert password not in text
    finally:
        slurm_cluster.run("scancel", db, check=False)  # the server stops on SIGTERM
        slurm_cluster.wait_until_empty(timeout=120)
    db_log = next(postgres_folder.glob("postgres-*.out")).read_text()
    assert "hpo-postgres: serving on" in db_log and password not in db_log


def test_stop_now_ends_the_array(slurm_cluster: SlurmCluster, postgres_url: str,
                                 mnist_dir: Path, tmp_path: Path) -> None:
    """hpo stop --now, from outside the cluster, ends every task of the array, each exiting 0,
    their trials FAIL "stopped" and queued again; timed from the command to the last task's
    exit, with the default heartbeat interval (10 s)."""
    create_study(postgres_url, mnist_dir, epochs=200)
    job = submit_workers(slurm_cluster, tmp_path, postgres_url, "--data-dir", str(mnist_dir),
                         total=12)
    wait_for(lambda: len(running_by_task(postgres_url, job, min_epochs=1)) == 4, timeout=300,
             what="all four tasks to be mid-trial")
    started = time.monotonic()
    # The URL from the environment: on a command line, anyone's ps would show the password.
    subprocess.run([sys.executable, "-m", "hpo", "stop", STUDY, "--now"], check=True,
                   capture_output=True, env={**os.environ, "HPO_STORAGE": postgres_url})
    marked = time.monotonic()
    wait_for(lambda: not any(j.startswith(f"{job}_") for j in slurm_cluster.jobs()),
             timeout=120, interval=0.1, what="the array to end")
    ended = time.monotonic()
    print(f"hpo stop --now to the last task's exit: {ended - started:.1f} s "
          f"({ended - marked:.1f} s from the mark)")

    tasks = task_records(slurm_cluster, job)
    assert {(r["JobState"], r["ExitCode"]) for r in tasks.values()} == {("COMPLETED", "0:0")}
    trials = trials_of(postgres_url)
    stopped = [t for t in trials if t.user_attrs.get(FAIL_REASON_ATTR) == "stopped"]
    assert len(stopped) == 4 and all(t.state == TrialState.FAIL for t in stopped)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Seen within one heartbeat interval: far from the 200 epochs the trials had left.
    assert ended - marked < 60
