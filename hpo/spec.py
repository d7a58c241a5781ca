"""The launch spec: everything a launch decided, resolved once and frozen.

``hpo launch`` and ``hpo worker`` build one :class:`LaunchSpec` from, in order, the command's
flags, the spec recorded on the study by its previous launch, and the definition's defaults.
The study-wide part (:data:`RECORDED`) is stored on the study, so workers joining from other
machines and ``hpo evaluate`` train exactly as the launch did; the rest describes this machine
(storage URL, data folder, worker slots). Worker processes receive the spec as it is; trials
read their epochs, seed, data and options from it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hpo import settings
from hpo.definition import PRUNER_NAMES, SAMPLER_NAMES, PrunerName, SamplerName, StudyDefinition
from hpo.errors import HpoError

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
# A study reference (a name, a file path or a module) and a definition's name are short text;
# anything longer is not one.
MAX_REFERENCE = 4096
MAX_OPTION_TEXT = 1000


# -- the settings' rules: one place for the flags and for the spec read back from storage -----
#
# The recorded spec comes from a database that every machine, and anyone with the dashboard's
# API, can write: each field is checked as strictly as the flag it stands for, and a bad one
# ends the command with a sentence instead of reaching a worker (a seed of -1, epochs "many").


def _whole(value: Any, low: int, high: int) -> str | None:
    # bool is an int to Python, and JSON true would pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        return "not a whole number"
    if not low <= value <= high:
        return f"outside {low}..{high}"
    return None


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "not a non-empty text"
    if len(value) > limit:
        return f"longer than {limit} characters"
    if not value.isprintable():
        return "text with control characters"
    return None


def _deadline(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        return "not a time (seconds since 1970)"
    return None


def _choice(value: Any, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else f"not one of {', '.join(choices)}"


_RULES = {
    "study": lambda v: _text(v, MAX_REFERENCE),
    "definition": lambda v: _text(v, MAX_REFERENCE),
    "sampler": lambda v: _choice(v, SAMPLER_NAMES),
    "pruner": lambda v: _choice(v, PRUNER_NAMES),
    "epochs": lambda v: _whole(v, 1, MAX_EPOCHS),
    "seed": lambda v: _whole(v, 0, MAX_SEED),
    "synthetic": lambda v: None if isinstance(v, bool) else "not true or false",
    "options": lambda v: None if isinstance(v, Mapping) else "not a mapping of options",
    "total": lambda v: None if v is None else _whole(v, 1, MAX_TRIALS),
    "patience": lambda v: None if v is None else _whole(v, 0, MAX_TRIALS),
    "deadline": _deadline,
}
assert set(_RULES) == set(RECORDED)
# The flag that sets each field, for the sentence that says how to record a good value.
_FLAGS = {"sampler": "--sampler", "pruner": "--pruner", "epochs": "--epochs", "seed": "--seed",
          "synthetic": "--synthetic", "total": "--total", "patience": "--patience",
          "deadline": "--timeout"}


def setting_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the recorded setting ``name`` (e.g. "outside 0..2147483647"),
    or None if it can."""
    return _RULES[name](value)


def option_problem(name: str, value: Any, definition: StudyDefinition | None = None
                   ) -> str | None:
    """What the study option ``name`` (--subset, --weights, or an option of ``definition``)
    must be if ``value`` is not it ("a fraction in (0, 1]"), or None if ``value`` is fine.
    Options are plain values of the definition's default's type: they reach the objective and
    the data loader as they are."""
    if definition is not None and name not in definition.options:
        known = ", ".join(definition.options) or "none"
        return f"one of the options of {definition.name} ({known})"
    if name == "subset":
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 < value <= 1:  # NaN fails this too
            return "a fraction in (0, 1]"
        return None
    if name == "weights":
        return None if value in ("imagenet", "none") else "imagenet or none"
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, str) and len(value) > MAX_OPTION_TEXT:
        return f"a text of at most {MAX_OPTION_TEXT} characters"
    if value is not None and not isinstance(value, str | bool | int | float):
        return "a plain value (text, a number, true or false)"
    default = definition.options.get(name) if definition is not None else None
    # An int where the default is a float is fine (JSON writes 1.0 as 1); nothing else is.
    if default is not None and value is not None and not (
            type(value) is type(default) or (isinstance(default, float) and type(value) is int)):
        return f"a {type(default).__name__}, as its default is"
    return None


def _shown(value: Any) -> str:
    # repr quotes text and escapes control characters; storage can hold anything, so cut it.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_recorded(recorded: Any, study_name: str, *, given: Collection[str] = (),
                   definition: StudyDefinition | None = None) -> dict[str, Any]:
    """The study's recorded spec, checked field by field (those in ``given``, which this
    command's flags replace, are not read; "options.NAME" for an option); HpoError naming
    the study, the field and the value otherwise. ``definition``: also check the options
    against it, and that the spec was recorded for it."""
    where = f"Study '{study_name}'"
    if recorded is None:
        return {}
    if not isinstance(recorded, Mapping):
        raise HpoError(f"{where} has a recorded launch spec that is a {type(recorded).__name__}"
                       f" ({_shown(recorded)}), not a mapping of settings: launch it again with"
                       " 'hpo launch' to record a good one.")
    for name, value in recorded.items():
        if name not in _RULES:
            raise HpoError(f"{where} has an unknown field {_shown(name)} in its recorded "
                           "launch spec: it was written by a newer hpo or by hand; upgrade hpo, "
                           "or launch it again with 'hpo launch' to record a good spec.")
        if name in given:
            continue
        problem = setting_problem(name, value)
        if problem is None and name == "options":
            for key, option in value.items():
                if f"options.{key}" in given:
                    continue
                if not isinstance(key, str):
                    problem = "an option named by something other than text"
                elif (must := option_problem(key, option, definition)) is not None:
                    problem = f"not {must}"
                if problem:
                    name, value = f"option {_shown(key)}", option
                    break
        if problem is None and name == "definition" and definition is not None \
                and value != definition.name:
            problem = f"not {definition.name!r}, the definition its study reference names"
        if problem:
            flag = _FLAGS.get(name)
            fix = (f"pass {flag} to 'hpo launch' to record a good one" if flag else
                   "launch it again with 'hpo launch' and its study file or name to record a "
                   "good one")
            raise HpoError(f"{where} has a bad {name} in its recorded launch spec: "
                           f"{_shown(value)} is {problem}; whoever can write its storage "
                           f"changed it, or {fix}.")
    return dict(recorded)


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
        given = {name for name, value in flags.items() if value is not None and name != "options"}
        given |= {"deadline"} if "deadline" in flags else set()  # a launch sets its own
        given |= {f"options.{key}" for key, value in flags.get("options", {}).items()
                  if value is not None}
        # The study and its definition are what this command resolved, never read back here.
        recorded = check_recorded(recorded, study_name, definition=definition,
                                  given=given | {"study", "definition"})

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

