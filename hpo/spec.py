"""The launch spec: everything a launch decided, resolved once and frozen.

``hpo launch`` and ``hpo worker`` build one :class:`LaunchSpec` from, in order, the command's
flags, the spec recorded on the study by its previous launch, and the definition's defaults.
The study-wide part (:data:`RECORDED`) is stored on the study, so workers joining from other
machines and ``hpo evaluate`` train exactly as the launch did; the rest describes this machine
(storage URL, data folder, worker slots). Worker processes receive the spec as it is; trials
read their epochs, seed, data and options from it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hpo import settings
from hpo.definition import PrunerName, SamplerName, StudyDefinition

# The fields stored on the study, shared by every worker on every machine.
RECORDED = ("study", "definition", "sampler", "pruner", "epochs", "seed", "synthetic",
            "options", "total", "patience", "deadline")
# Seeds are recorded on the study and must fit the samplers' 32-bit seeds.
MAX_SEED = 2**31 - 1
# Generous ceilings that keep every count inside the 64-bit counters workers share.
MAX_TRIALS = 1_000_000
MAX_EPOCHS = 100_000
# Seconds between a running trial's heartbeats, and without one before it counts as lost.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process of this machine: its device and CPU threads (hpo.run.devices plans
    them)."""

    index: int
    device: str  # "cpu", or "cuda:N" with N counted among the GPUs hpo sees
    cuda_visible_devices: str  # the child's CUDA_VISIBLE_DEVICES: "" hides every GPU
    threads: int

    @property
    def label(self) -> str:
        if self.device == "cpu":
            return f"worker {self.index} (cpu)"
        return f"worker {self.index} ({self.device}, GPU {self.cuda_visible_devices})"


@dataclass(frozen=True)
class LaunchSpec:
    # -- recorded on the study ------------------------------------------------------------
    study: str  # the study reference: an installed name, an absolute file path or a module
    definition: str  # the definition's name, which a stored study must match
    sampler: SamplerName
    pruner: PrunerName
    epochs: int
    seed: int
    synthetic: bool
    options: Mapping[str, Any]
    total: int | None  # study-wide cap on finished trials, across all machines
    # Done when this many finished trials in a row brought no new best (hpo.search.stopping).
    patience: int | None
    # No trial starts after this time (seconds since the epoch, UTC): the launch's --timeout.
    # Only hpo launch sets it; hpo worker keeps the launch's, a new launch starts its own.
    deadline: float | None
    # -- this machine ---------------------------------------------------------------------
    study_name: str
    storage_url: str
    data_dir: str
    artifact_dir: str | None = None
    slots: tuple[WorkerSlot, ...] = ()
    trials: int | None = None  # this launch's budget; None: until stopped or the total
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    keep_checkpoints: int = 3
    outage_tolerance: float = settings.DEFAULT_OUTAGE_TOLERANCE
    mixed_precision: bool = True
    started_by: str = "launch"  # or "hpo worker": the origin in the workers' records

    def record(self) -> dict[str, Any]:
        """The study-wide part, as stored on the study."""
        return {name: dict(value) if isinstance(value, Mapping) else value
                for name, value in asdict(self).items() if name in RECORDED}

    @classmethod
    def build(cls, definition: StudyDefinition, *, reference: str, study_name: str,
              recorded: Mapping[str, Any] | None, flags: Mapping[str, Any],
              storage_url: str, data_dir: str, **local: Any) -> LaunchSpec:
        """Each recorded field from ``flags`` if given (not None), else from the study's
        ``recorded`` spec, else from the definition; ``local`` fields are this machine's.
        ``flags['options']`` holds only the options given on the command line."""
        recorded = recorded or {}

        def pick(name: str, default: Any) -> Any:
            if flags.get(name) is not None:
                return flags[name]
            return recorded[name] if recorded.get(name) is not None else default

        seed = pick("seed", None)
        options = {**definition.options, **recorded.get("options", {}),
                   **{k: v for k, v in flags.get("options", {}).items() if v is not None}}
        return cls(
            study=reference, definition=definition.name,
            sampler=pick("sampler", definition.sampler),
            pruner=pick("pruner", definition.pruner),
            epochs=pick("epochs", definition.epochs),
            seed=seed if seed is not None else secrets.randbelow(MAX_SEED + 1),
            synthetic=bool(pick("synthetic", False)),
            options=options,
            total=pick("total", None),
            patience=pick("patience", None),
            deadline=flags["deadline"] if "deadline" in flags else recorded.get("deadline"),
            study_name=study_name, storage_url=storage_url, data_dir=data_dir, **local,
        )

