"""A throwaway single-node Slurm cluster for tests, from Debian's slurm-wlm and munge.

Everything lives in one temporary folder: the munge key and socket, ``slurm.conf`` (clients
find it through ``SLURM_CONF``, so /etc/slurm is never read or written), the controller's state,
the node's spool, logs and job output. The ports are free ones. munged, slurmctld and slurmd
run in the foreground as children of the test process, so they are stopped by the PIDs it
started. slurmd runs jobs as the submitting user, which takes root: elsewhere the fixture skips.

The node declares 2 CPUs, each shared by up to 4 jobs (``OverSubscribe=FORCE:4``, so an array
of 4 one-CPU tasks runs at once on 2 cores) and 4 "GPUs" that are empty files: the shipped
``--gres=gpu:1`` is satisfied, and hpo, finding no CUDA device, runs CPU workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.postgres import free_port

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "slurmstepd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot be started here, or None if it can."""
    for name in (*DAEMONS, *CLIENTS):
        if _binary(name) is None:
            package = "munge" if name.startswith("munge") else "slurm-wlm"
            return f"{name} is not installed (apt-get install slurm-wlm munge; missing {package})"
    if os.geteuid() != 0:
        return "slurmd runs jobs as their submitter, which needs root"
    return None


CONF = """\
# A throwaway test cluster (tests/slurm.py): one node, no accounting, nothing outside {root}.
ClusterName=hpotest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long before it runs again (120 s by default).
AuthInfo=socket={root}/munge/socket,cred_expire=10
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# Only the configured CPUs and memory count, whatever the machine has.
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol for 5 minutes (their exit codes).
MinJobAge=300
# How long a cancelled task has between SIGTERM and SIGKILL.
KillWait=30
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:4 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class SlurmCluster:
    """Start it with :meth:`start`; :meth:`env` is what a client command needs."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hpo-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(args, env=env or self.env(), capture_output=True, text=True,
                              check=check, timeout=timeout)

    def start(self) -> SlurmCluster:
        for folder in ("munge", "state", "gpu", "jobs"):
            (self.root / folder).mkdir(mode=0o700)
        # A job run as another user (sbatch --uid) executes its script from the spool.
        self.root.chmod(0o755)
        (self.root / "spool").mkdir(mode=0o755)
        self._start_munge()
        gpus = self.root / "gpu"
        for index in range(4):
            (gpus / f"gpu{index}").touch()
        (self.root / "gres.conf").write_text(f"Name=gpu File={gpus}/gpu[0-3]\n")
        (self.root / "plugstack.conf").write_text("")
        self.conf.write_text(CONF.format(root=self.root, host=self.host,
                                         ctld_port=free_port(), slurmd_port=free_port()))
        self._daemon("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self.run("scontrol", "ping", check=False).stdout.count("is UP"),
                   "slurmctld to answer")
        self._daemon("slurmd", "-D", "-f", str(self.conf), "-N", self.host)
        self._wait(self._node_ready, "the node to become idle")
        return self

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        key = munge / "key"
        subprocess.run([_binary("mungekey"), "-c", "-k", str(key)], check=True,
                       capture_output=True)
        key.chmod(0o400)
        # --force: munged run as root, with its files in a temporary folder, not /etc/munge.
        self._daemon("munged", "-F", "--force", f"--socket={munge}/socket",
                     f"--key-file={key}", f"--pid-file={munge}/pid",
                     f"--log-file={munge}/log", f"--seed-file={munge}/seed")
        self._wait(lambda: (munge / "socket").exists(), "munged's socket")

    def _daemon(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen([_binary(name), *args], stdout=log,
                                                stderr=subprocess.STDOUT,
                                                env=self.env(), start_new_session=True)

    def _node_ready(self) -> bool:
        state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
        if state.startswith(("idle", "mixed", "allocated")):
            return True
        if state.startswith(("down", "drain", "unk")):  # a leftover state: bring it back
            self.run("scontrol", "update", f"nodename={self.host}", "state=resume", check=False)
        return False

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}): {self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.root.glob("*.log")) + sorted(
                             self.root.glob("*.out")))

    def sbatch(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Submit; returns the job id."""
        return self.run("sbatch", "--parsable", *args, env=env).stdout.strip().split(";")[0]

    def jobs(self) -> list[str]:
        """Job ids of jobs still in the queue (pending, running or completing)."""
        out = self.run("squeue", "-h", "-o", "%i", check=False).stdout
        return out.split()

    def wait_until_empty(self, timeout: float = 300) -> None:
        self._wait(lambda: not self.jobs(), "the queue to empty", timeout)

    def job_records(self, job: str) -> list[dict[str, str]]:
        """``scontrol show job`` of a job (an array: one record per task), as key=value."""
        out = self.run("scontrol", "-o", "show", "job", job, check=False).stdout
        records = []
        for line in out.splitlines():
            fields = {}
            for word in line.split():
                key, _, value = word.partition("=")
                fields[key] = value
            records.append(fields)
        return records

    def stop(self) -> None:
        """Cancel what runs, then stop every daemon this cluster started, by PID."""
        with contextlib.suppress(Exception):
            if self.processes.get("slurmctld") and self.jobs():
                # Every job, whoever runs it (a test may submit as another user, --uid):
                # SIGTERM first, so a database job shuts its server down cleanly.
                self.run("scancel", *self.jobs(), check=False)
                self._wait(lambda: not self.jobs(), "the jobs to end", timeout=60)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
