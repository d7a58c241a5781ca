"""The commands that only read a study (status, best, trials, export), ``hpo --help``, and
``hpo stop``, whose one write is a row, answered before Typer, Rich, optuna, SQLAlchemy or torch
is imported.

``hpo`` starts in :func:`answer` (hpo/__main__.py). Where it understands the whole command
line, it runs the command here; anything else (another command, a subcommand's --help, an
option it does not know, an error to report) goes to hpo/cli.py's Typer app, whose read
commands call the same functions. A study is read from Optuna's tables directly
(hpo.storage.snapshot) where it can, else through Optuna.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpo import commands, plain, settings
from hpo.errors import HpoError
from hpo.spec import MAX_TRIALS

# The states --state accepts, as the CLI spells them.
STATES = ("complete", "pruned", "fail", "running", "waiting")
FORMATS = ("csv", "json")


class _NeedsOptuna(Exception):
    """The fast path cannot read this storage: the full CLI reads it through Optuna."""


# -- the fast path ------------------------------------------------------------------------

# Per command: its options that take a value, its flags, and how many arguments it takes.
_SYNTAX: dict[str, tuple[dict[str, str], dict[str, str], tuple[int, int]]] = {
    "status": ({"--storage": "storage"}, {"--json": "as_json"}, (0, 1)),
    "best": ({"--storage": "storage"}, {"--json": "as_json"}, (1, 1)),
    "trials": ({"--storage": "storage", "--state": "state", "--top": "top"},
               {"--json": "as_json"}, (1, 1)),
    "export": ({"--storage": "storage", "--format": "format", "--output": "output",
                "-o": "output"}, {}, (1, 1)),
    "stop": ({"--storage": "storage"}, {"--now": "now"}, (1, 1)),
}


def answer(argv: Sequence[str]) -> int | None:
    """Run ``hpo argv`` if it is a read command or ``--help``, and return its exit code; None
    if the full CLI must take it."""
    if list(argv) == ["--help"]:
        return _help()
    if not argv or argv[0] not in _SYNTAX:
        return None
    parsed = _parse(argv[0], argv[1:])
    if parsed is None:
        return None
    try:
        _COMMANDS[argv[0]](**parsed, fast=True)
    except (HpoError, _NeedsOptuna):
        return None  # the full CLI says it, or reads it, as it always has
    return 0


def _help() -> int | None:
    fixed = os.environ.get("TERMINAL_WIDTH")  # Typer's own setting of its help's width
    if fixed and not (fixed.isascii() and fixed.isdigit() and int(fixed) > 0):
        return None
    out = plain.screen(sys.stdout, int(fixed) if fixed else None)
    if out is None:
        return None
    page = plain.help_page(_program(), commands.DESCRIPTION, commands.summaries(), out)
    if page is None:
        return None
    sys.stdout.write(page)
    return 0


def _program() -> str:
    """The name Typer's usage line gives this program: the script's, or python -m PACKAGE."""
    main = sys.modules.get("__main__")
    package = getattr(main, "__package__", None)
    if not package:
        return Path(sys.argv[0]).name
    stem = Path(getattr(main, "__file__", "") or "").stem
    return f"python -m {package}" + ("" if stem == "__main__" else f".{stem}")


def _parse(command: str, args: Sequence[str]) -> dict[str, Any] | None:
    """The keyword arguments of ``command``'s function, or None for anything unusual."""
    valued, flags, (fewest, most) = _SYNTAX[command]
    given: dict[str, Any] = {}
    positional: list[str] = []
    rest = list(args)
    while rest:
        token = rest.pop(0)
        name, equals, value = token.partition("=")
        if token in flags:
            given[flags[token]] = True
        elif (name in valued and token.startswith("--")) or token in valued:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            key = valued[name]
            if not value or value.startswith("-") or (key in given and key != "state"):
                return None
            if key == "state":
                if value not in STATES:
                    return None
                given.setdefault("state", []).append(value)
            else:
                given[key] = value
        elif token.startswith("-"):
            return None
        else:
            positional.append(token)
    if not fewest <= len(positional) <= most:
        return None
    if os.environ.get(settings.STORAGE_ENV) == "":
        return None
    storage = given.pop("storage", None) or os.environ.get(settings.STORAGE_ENV)
    result: dict[str, Any] = {"storage": storage or settings.DEFAULT_STORAGE_URL,
                              "study": positional[0] if positional else None}
    if command in ("status", "best", "trials"):
        result["as_json"] = given.pop("as_json", False)
    if command == "stop":
        result["now"] = given.pop("now", False)
    if command == "trials":
        top = given.pop("top", None)
        if top is not None and not (top.isascii() and top.isdigit()
                                    and 1 <= int(top) <= MAX_TRIALS):
            return None
        result["top"] = int(top) if top is not None else None
        result["states"] = given.pop("state", None)
    if command == "export":
        if given.get("format") not in (None, *FORMATS):
            return None
        result["format"] = given.pop("format", None)
        output = given.pop("output", None)
        result["output"] = Path(output) if output is not None else None
    return result


# -- reading ------------------------------------------------------------------------------


def read(storage: str, names: list[str] | None, *, fast: bool = False) -> list[Any]:
    """The studies ``names`` (None: all), read only: straight from the tables where it can
    (hpo.storage.snapshot), else through Optuna (not on the fast path: _NeedsOptuna)."""
    from hpo.storage import snapshot
    from hpo.storage.urls import mask_url

    reader = snapshot.open_snapshot(storage)
    if reader is not None:
        try:
            known = reader.study_names()
            for name in names or []:
                if name not in known:
                    raise snapshot.no_such_study(name, known, mask_url(storage))
            return [reader.load(name) for name in (known if names is None else names)]
        except HpoError:
            raise
        except Exception as error:  # another Optuna schema: read it through Optuna
            logging.getLogger(__name__).debug("Reading through Optuna: %s", error)
        finally:
            reader.close()
    if fast:
        raise _NeedsOptuna
    import optuna

    from hpo.storage import records
    from hpo.storage.engine import open_storage

    store = open_storage(storage, must_exist=True)
    chosen = records.study_names(store) if names is None else names
    return [records.load(store, name) if names is not None
            else optuna.load_study(study_name=name, storage=store) for name in chosen]


# -- the commands -------------------------------------------------------------------------


def status(storage: str, study: str | None, *, as_json: bool = False, fast: bool = False
           ) -> None:
    """Trials by state, best value and last activity per study; then the stopped studies and
    each study's live workers (their records, hpo.run.presence)."""
    from hpo.results import summary
    from hpo.storage.attributes import describe_stop
    from hpo.storage.urls import mask_url

    found_studies = [summary.summarize(stored)
                     for stored in read(storage, [study] if study else None, fast=fast)]
    now = datetime.now(UTC)
    if as_json:
        sys.stdout.write(summary.json_text({"storage": mask_url(storage), "studies": [
            _status_record(found, now) for found in found_studies]}, default=str) + "\n")
        return
    if not found_studies:
        plain.say(f"No studies in {mask_url(storage)} yet: start one with 'hpo launch'.")
        return
    columns = [(column, column not in ("study", "definition", "dataset", "last activity"))
               for column in ("study", "definition", "dataset",
                              *[s.lower() for s in summary.STATE_ORDER], "best",
                              "last activity")]
    rows = []
    for found in found_studies:
        best = (f"{found.best_value:.4f} (#{found.best_trial})"
                if found.best_value is not None else "-")
        last = found.last_activity.strftime("%Y-%m-%d %H:%M:%S") \
            if found.last_activity else "-"
        rows.append([found.name, found.definition, found.dataset,
                     *[str(found.counts[s]) for s in summary.STATE_ORDER], best, last])
    plain.show_table(f"Studies in {mask_url(storage)}", columns, rows)
    for found in found_studies:
        if found.stopped is not None:
            plain.say(f"Study {found.name} was {describe_stop(found.stopped)} (hpo stop): "
                      "'hpo launch' or 'hpo worker' on it goes on.")
    for found in found_studies:
        if found.workers:
            plain.say(f"Workers on {found.name} ({len(found.workers)}):")
            for record in found.workers:
                plain.say("  " + summary.describe_worker(record, found.metric, now))


def _status_record(found: Any, now: datetime) -> dict[str, Any]:
    """A study's line of ``hpo status --json``, its workers with their heartbeat's age."""
    from dataclasses import asdict

    from hpo.results.summary import worker_state

    record = asdict(found)
    record["counts"] = {state.lower(): n for state, n in found.counts.items()}
    for worker in record["workers"]:
        worker["heartbeat_age_s"], worker["stale"] = worker_state(worker, now)
    return record


def best(storage: str, study: str, *, as_json: bool = False, fast: bool = False) -> None:
    from hpo.results import summary
    from hpo.storage.attributes import metric_name

    [loaded] = read(storage, [study], fast=fast)
    trial = summary.best_trial(loaded)
    metric = metric_name(loaded)
    if as_json:
        payload = {"study": loaded.study_name, "metric": metric, "trial": trial.number,
                   "value": trial.value, "params": trial.params}
        sys.stdout.write(summary.json_text(payload) + "\n")
        return
    plain.say(f"Best {metric} of {loaded.study_name}: {trial.value:.4f} (trial "
              f"{trial.number})")
    for name, value in trial.params.items():
        plain.say(f"  {name:<12} {value}")


def trials(storage: str, study: str, *, states: list[str] | None = None,
           top: int | None = None, as_json: bool = False, fast: bool = False) -> None:
    from hpo.results import summary
    from hpo.storage.attributes import EPOCHS_RUN_ATTR

    [loaded] = read(storage, [study], fast=fast)
    chosen: Sequence[Any] = loaded.get_trials(deepcopy=False)
    if states:
        wanted = {s.upper() for s in states}
        chosen = [t for t in chosen if t.state.name in wanted]
    if top:
        if not states:  # a pruned trial's value is an early epoch's: the best are the complete
            chosen = [t for t in chosen if t.state.name == "COMPLETE"]
        chosen = summary.ranked(loaded, chosen)[:top]
    records = [summary.trial_record(t) for t in chosen]
    if as_json:
        sys.stdout.write(summary.json_text(records, default=str) + "\n")
        return
    rows = []
    for record in records:
        params = ", ".join(f"{k}={_short(v)}" for k, v in record["params"].items())
        duration = record["duration_s"]
        rows.append([str(record["number"]), record["state"].lower(),
                     f"{record['value']:.4f}" if record["value"] is not None else "-",
                     str(record["user_attrs"].get(EPOCHS_RUN_ATTR, "-")),
                     f"{duration:.1f} s" if duration is not None else "-", params])
    columns = [(column, column in ("#", "value", "epochs", "duration"))
               for column in ("#", "state", "value", "epochs", "duration", "params")]
    plain.show_table(f"Trials of {loaded.study_name}", columns, rows)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def export(storage: str, study: str, *, format: str | None = None, output: Path | None = None,
           fast: bool = False) -> None:
    from hpo.results import summary

    [loaded] = read(storage, [study], fast=fast)
    chosen = format or ("json" if output and output.suffix == ".json" else "csv")
    text = summary.export_json(loaded) if chosen == "json" else summary.export_csv(loaded)
    if output is None:
        sys.stdout.write(text)
        return
    if not output.parent.exists():
        raise HpoError(f"The folder '{output.parent}' for --output does not exist: create it "
                       "first.")
    if output.is_dir():
        raise HpoError(f"--output {output} is a folder: give a file name, e.g. "
                       f"{output / ('trials.' + chosen)}.")
    try:
        output.write_text(text)
    except OSError as error:
        raise HpoError(f"Cannot write {output} ({error.strerror or error}): choose a path you "
                       "can write to.") from None
    plain.say(f"Wrote {len(loaded.get_trials())} trial(s) of {loaded.study_name} to {output}.",
              err=True)


def stop(storage: str, study: str, *, now: bool = False, fast: bool = False) -> None:
    from hpo.run import stop as stopping
    from hpo.storage.attributes import describe_stop

    mark = stopping.mark_stopped_directly(storage, study, now=now)
    if mark is None:
        if fast:
            raise _NeedsOptuna  # the full CLI rides out an outage, and says what is wrong
        mark = stopping.mark_stopped(storage, study, now=now,
                                     outage_tolerance=settings.outage_tolerance())
    what = "interrupt their trials" if now else "finish their current trials"
    plain.say(f"Study {study} {describe_stop(mark)}: its workers, on every machine, {what} "
              "within one heartbeat interval and exit.")


_COMMANDS: dict[str, Callable[..., None]] = {"status": status, "best": best, "trials": trials,
                                             "export": export, "stop": stop}
