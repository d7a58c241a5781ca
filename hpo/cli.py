"""The ``hpo`` command line.

Commands resolve storage and data the same way (flag, then environment, then default; see
hpo/settings.py), print results on stdout and logs, progress and errors on stderr. A problem the
user can fix ends the command with one sentence and a non-zero exit code, never a traceback.
Heavy imports (torch) are deferred to the commands that train.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

import studies
from hpo import settings
from hpo.errors import HpoError

app = typer.Typer(
    name="hpo",
    help="Hyperparameter optimization for deep-learning training on shared Optuna studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (scripts, CI) gets wide tables instead of rich's 80-column default.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


class Sampler(str, Enum):
    tpe = "tpe"
    random = "random"
    grid = "grid"


class Pruner(str, Enum):
    hyperband = "hyperband"
    asha = "asha"
    median = "median"
    none = "none"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


def _known_study(name: str) -> str:
    if name not in studies.REGISTRY:
        raise typer.BadParameter(
            f"unknown study '{name}': choose one of {', '.join(studies.names())} "
            "(see 'hpo studies')."
        )
    return name


# -- shared options -----------------------------------------------------------------------

StudyArg = Annotated[str, typer.Argument(help="A study definition (see 'hpo studies').",
                                         callback=_known_study, show_default=False)]
StoredStudyArg = Annotated[str, typer.Argument(help="The study's name in storage.",
                                               show_default=False)]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help=f"SQLAlchemy URL of the study storage [env: {settings.STORAGE_ENV}; "
                      f"default: {settings.DEFAULT_STORAGE_URL}]", show_default=False)]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help=f"Dataset root [env: {settings.DATA_DIR_ENV}; default: ./data]",
    show_default=False)]
StudyNameOpt = Annotated[str | None, typer.Option(
    "--study-name", help="Name of the study in storage [default: the definition's name]",
    show_default=False)]


def _user_errors(func: F) -> F:
    """Turn HpoError into one sentence on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HpoError as error:
            from hpo.storage import scrub

            message = scrub(str(error), os.environ.get(settings.STORAGE_ENV, ""))
            stderr.print(f"[bold red]Error:[/] {message}", highlight=False, markup=True,
                         soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.handlers[:] = [RichHandler(console=stderr, show_path=False, markup=False,
                                        rich_tracebacks=False)]
    root.setLevel(level)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def _open(storage: str | None, *, must_exist: bool = True):
    from hpo.storage import open_storage

    return open_storage(settings.resolve_storage_url(storage), must_exist=must_exist)


# -- hpo studies --------------------------------------------------------------------------


@app.command("studies")
def list_studies() -> None:
    """List the study definitions, one line each."""
    width = max(len(name) for name in studies.names())
    for definition in studies.REGISTRY.values():
        defaults = (f"{definition.sampler}/{definition.pruner}, {definition.epochs} epochs, "
                    f"{definition.trials} trials")
        stdout.print(f"{definition.name:<{width}}  {definition.summary}  [{defaults}]",
                     markup=False)


# -- hpo launch / hpo worker --------------------------------------------------------------


def _study_options(definition: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Validate study-specific options (--subset, --weights) against the definition."""
    options = dict(definition.options)
    for key, value in given.items():
        if value is None:
            continue
        if key not in definition.options:
            accepting = [d.name for d in studies.REGISTRY.values() if key in d.options]
            raise HpoError(f"--{key} does not apply to {definition.name}: it is an option of "
                           f"{', '.join(accepting) or 'no study'}.")
        options[key] = value
    if "subset" in options and not 0 < float(options["subset"]) <= 1:
        raise HpoError(f"--subset must be a fraction in (0, 1], not {options['subset']}.")
    if "weights" in options and options["weights"] not in ("imagenet", "none"):
        raise HpoError(f"--weights must be imagenet or none, not {options['weights']!r}.")
    return options


def _start(request: Any, *, dry_run: bool, dashboard: bool, dashboard_port: int,
           require_new_budget: bool) -> None:
    from hpo import launcher
    from hpo.progress import LaunchProgress
    from hpo.storage import mask_url, open_storage

    masked = mask_url(request.storage_url)
    if dry_run:
        _print_plan(request, masked)
        return
    _setup_logging()
    storage = open_storage(request.storage_url, heartbeat_interval=request.heartbeat_interval,
                           grace_period=request.grace_period)
    study, created, budget, note = launcher.prepare_launch(request, storage)
    if note:
        logging.getLogger("hpo").warning(note)
    if dashboard:
        from hpo.dashboard import start_in_background

        url = start_in_background(request.storage_url, port=dashboard_port,
                                  artifact_dir=request.artifact_dir)

        stderr.print(f"Dashboard: {url}")
    definition = studies.get(request.definition_name)
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    progress = LaunchProgress(
        console=stderr, study_name=request.study_name, storage_label=masked,
        metric=definition.metric_name, maximize=definition.direction == "maximize",
        budget=budget, epochs=request.epochs, slots=request.slots,
    )
    result = launcher.run_launch(request, storage, study=study, budget=budget,
                                 progress=progress)
    _print_summary(study, before, masked, result.counted, budget)
    if result.interrupted:
        stderr.print("Stopped before the budget was spent; launch again to add the rest.")
        raise typer.Exit(launcher.EXIT_INTERRUPTED)
    if budget is not None and result.counted < budget and require_new_budget:
        raise HpoError(f"Only {result.counted} of {budget} trials finished because worker(s) "
                       f"{', '.join(map(str, result.failed_slots)) or '?'} kept failing: see "
                       "the errors above.")


def _print_plan(request: Any, masked: str) -> None:
    stdout.print(f"study:    {request.study_name} (definition {request.definition_name})")
    stdout.print(f"storage:  {masked}")
    budget = request.trials if request.trials is not None else "until stopped"
    total = f", study-wide total {request.total}" if request.total is not None else ""
    stdout.print(f"budget:   {budget} trial(s){total}, {request.epochs} epoch(s) each")
    stdout.print(f"search:   sampler {request.sampler}, pruner {request.pruner}, "
                 f"seed {request.seed}")
    data = "synthetic" if request.synthetic else request.data_dir
    stdout.print(f"data:     {data}")
    for slot in request.slots:
        gpu = f", CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices}" if slot.device != "cpu" else ""
        stdout.print(f"worker {slot.index} -> {slot.device}{gpu}, {slot.threads} thread(s)")


def _print_summary(study: Any, before: set[int], masked: str, counted: int,
                   budget: int | None) -> None:
    from hpo import results

    new = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
    states = {state: sum(t.state.name == state for t in new) for state in results.STATE_ORDER}
    shown = ", ".join(f"{n} {state.lower()}" for state, n in states.items() if n)
    stdout.print(f"Study {study.study_name} on {masked}: {counted} trial(s) finished in this "
                 f"launch ({shown or 'none'}).")
    metric = study.user_attrs.get("metric", "value")
    wasted = results.wasted_epochs(study, new)
    if wasted is not None:
        stdout.print(f"Wasted epochs: {wasted.describe(metric)}.")
    best = results.best_trial_or_none(study)
    if best is not None:
        stdout.print(f"Best {metric} {best.value:.4f} (trial {best.number}):")
        for name, value in best.params.items():
            stdout.print(f"  {name:<12} {value}")
    storage_flag = "" if masked == settings.DEFAULT_STORAGE_URL else f" --storage '{masked}'"
    stdout.print(f"Watch it with: hpo dashboard{storage_flag}")


@app.command()
@_user_errors
def launch(
    study: StudyArg,
    trials: Annotated[int | None, typer.Option(
        min=1, help="Trials to run to an end in this launch [default: the study's]",
        show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Worker processes [default: one per GPU x --workers-per-gpu, or 1 on CPU]",
        show_default=False)] = None,
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    sampler: Annotated[Sampler | None, typer.Option(
        help="Search algorithm [default: the study's]", show_default=False)] = None,
    pruner: Annotated[Pruner | None, typer.Option(
        help="Early stopping of bad trials [default: the study's]", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Epochs per trial [default: the study's]", show_default=False)] = None,
    data_dir: DataDirOpt = None,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="Train on generated data with the dataset's shapes (smoke runs)")
    ] = False,
    seed: Annotated[int | None, typer.Option(
        help="Seed for samplers and training [default: random, recorded on the study]",
        show_default=False)] = None,
    gpus: Annotated[str, typer.Option(help="GPUs to use: all, none, or numbers like 0,2")] = "all",
    workers_per_gpu: Annotated[int, typer.Option(min=1, help="Workers sharing each GPU")] = 1,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads per worker [default: the cores divided among the workers]",
        show_default=False)] = None,
    total: Annotated[int | None, typer.Option(
        min=1, help="Study-wide cap: every worker stops once the study holds this many "
                    "finished trials", show_default=False)] = None,
    subset: Annotated[float | None, typer.Option(
        help="svhn: fraction of the train split to use, e.g. 0.25", show_default=False)] = None,
    weights: Annotated[str | None, typer.Option(
        help="svhn: pretrained weights, imagenet or none", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (workers, devices, storage, budget) and exit")] = False,
    dashboard: Annotated[bool, typer.Option(
        "--dashboard", help="Serve optuna-dashboard beside the workers")] = False,
    dashboard_port: Annotated[int, typer.Option(help="Port for --dashboard")] = 8080,
    heartbeat_interval: Annotated[int, typer.Option(
        min=1, help="Seconds between a running trial's heartbeats")] = 10,
    grace_period: Annotated[int, typer.Option(
        min=1, help="Seconds without a heartbeat before a trial is failed and retried")] = 30,
    keep_checkpoints: Annotated[int, typer.Option(
        min=0, help="Checkpoints of the best trials to keep (0: none)")] = 3,
) -> None:
    """Create or resume a study and run trials on it with one worker per GPU (or CPU workers).

    Launching an existing study resumes it and adds --trials trials.
    """
    from hpo.devices import plan_workers
    from hpo.launcher import LaunchRequest

    definition = studies.get(study)
    chosen_sampler = sampler.value if sampler else definition.sampler
    if chosen_sampler == "grid" and definition.grid is None:
        raise HpoError(f"Study {definition.name} has no grid: use --sampler tpe or random.")
    # A grid search defaults to the whole grid; anything else to the definition's budget.
    default_trials = definition.grid_size if chosen_sampler == "grid" else definition.trials
    options = _study_options(definition, {"subset": subset, "weights": weights})
    request = LaunchRequest(
        definition_name=definition.name,
        study_name=study_name or definition.name,
        storage_url=settings.resolve_storage_url(storage),
        slots=plan_workers(gpus=gpus, workers=workers, workers_per_gpu=workers_per_gpu,
                           threads=threads),
        trials=trials or default_trials,
        sampler=chosen_sampler,
        pruner=pruner.value if pruner else definition.pruner,
        epochs=epochs or definition.epochs,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        synthetic=synthetic,
        data_dir=str(settings.resolve_data_dir(data_dir)),
        options=options,
        total=total,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        artifact_dir=str(settings.resolve_artifact_dir()),
        keep_checkpoints=keep_checkpoints,
    )
    from hpo.storage import check_storage_url

    check_storage_url(request.storage_url)
    _start(request, dry_run=dry_run, dashboard=dashboard, dashboard_port=dashboard_port,
           require_new_budget=True)


@app.command()
@_user_errors
def worker(
    study: StudyArg,
    trials: Annotated[int | None, typer.Option(
        min=1, help="Most trials this worker runs [default: until the study's total or Ctrl-C]",
        show_default=False)] = None,
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    gpus: Annotated[str, typer.Option(help="GPUs to use: all, none, or numbers like 0,2")] = "all",
    workers_per_gpu: Annotated[int, typer.Option(min=1, help="Workers sharing each GPU")] = 1,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Worker processes on this machine [default: one per GPU, or 1]",
        show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads per worker [default: the cores divided among the workers]",
        show_default=False)] = None,
    total: Annotated[int | None, typer.Option(
        min=1, help="Study-wide cap on finished trials [default: the launch's]",
        show_default=False)] = None,
    data_dir: DataDirOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit")] = False,
    heartbeat_interval: Annotated[int, typer.Option(min=1)] = 10,
    grace_period: Annotated[int, typer.Option(min=1)] = 30,
    keep_checkpoints: Annotated[int, typer.Option(min=0)] = 3,
) -> None:
    """Join a study from this machine, with the settings of the launch that created it.

    If the study does not exist yet, it is created with the definition's defaults, so every
    machine can run the same command.
    """
    from hpo import study_store
    from hpo.devices import plan_workers
    from hpo.launcher import LaunchRequest

    definition = studies.get(study)
    name = study_name or definition.name
    url = settings.resolve_storage_url(storage)
    recorded: dict[str, Any] = {}
    store = _open(url, must_exist=False)
    if name in study_store.study_names(store):
        import optuna

        recorded = study_store.launch_config(optuna.load_study(study_name=name, storage=store))
    request = LaunchRequest(
        definition_name=definition.name,
        study_name=name,
        storage_url=url,
        slots=plan_workers(gpus=gpus, workers=workers, workers_per_gpu=workers_per_gpu,
                           threads=threads),
        trials=trials,
        sampler=recorded.get("sampler", definition.sampler),
        pruner=recorded.get("pruner", definition.pruner),
        epochs=recorded.get("epochs", definition.epochs),
        seed=recorded.get("seed", secrets.randbelow(2**31)),
        synthetic=recorded.get("synthetic", False),
        data_dir=str(settings.resolve_data_dir(data_dir)),
        options=recorded.get("options", dict(definition.options)),
        total=total if total is not None else recorded.get("total"),
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        artifact_dir=str(settings.resolve_artifact_dir()),
        keep_checkpoints=keep_checkpoints,
    )
    _start(request, dry_run=dry_run, dashboard=False, dashboard_port=0,
           require_new_budget=False)


# -- reading results ----------------------------------------------------------------------


@app.command()
@_user_errors
def status(
    study: Annotated[str | None, typer.Argument(
        help="Only this study [default: every study in storage]", show_default=False)] = None,
    storage: StorageOpt = None,
) -> None:
    """Trials by state, best value and last activity, per study."""
    import optuna

    from hpo import results, study_store
    from hpo.storage import mask_url

    store = _open(storage)
    names = [study] if study else study_store.study_names(store)
    if study:
        study_store.load(store, study)  # a clear error for an unknown name
    if not names:
        stdout.print(f"No studies in {mask_url(store.url)} yet: start one with 'hpo launch'.")
        return
    table = Table(title=f"Studies in {mask_url(store.url)}", title_justify="left")
    for column in ("study", "definition", "dataset", *[s.lower() for s in results.STATE_ORDER],
                   "best", "last activity"):
        table.add_column(column, justify="right" if column not in
                         ("study", "definition", "dataset", "last activity") else "left")
    for name in names:
        summary = results.summarize(optuna.load_study(study_name=name, storage=store))
        best = (f"{summary.best_value:.4f} (#{summary.best_trial})"
                if summary.best_value is not None else "-")
        last = summary.last_activity.strftime("%Y-%m-%d %H:%M:%S") \
            if summary.last_activity else "-"
        table.add_row(summary.name, summary.definition, summary.dataset,
                      *[str(summary.counts[s]) for s in results.STATE_ORDER], best, last)
    stdout.print(table)


@app.command()
@_user_errors
def best(
    study: StoredStudyArg,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout")] = False,
) -> None:
    """The best trial's value and params."""
    from hpo import results, study_store

    loaded = study_store.load(_open(storage), study)
    trial = results.best_trial(loaded)
    metric = loaded.user_attrs.get("metric", "value")
    if as_json:
        payload = {"study": loaded.study_name, "metric": metric, "trial": trial.number,
                   "value": trial.value, "params": trial.params}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    stdout.print(f"Best {metric} of {loaded.study_name}: {trial.value:.4f} (trial {trial.number})")
    for name, value in trial.params.items():
        stdout.print(f"  {name:<12} {value}")


@app.command()
@_user_errors
def export(
    study: StoredStudyArg,
    storage: StorageOpt = None,
    format: Annotated[ExportFormat | None, typer.Option(
        "--format", help="csv or json [default: from --output's suffix, else csv]",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write [default: stdout]", show_default=False)] = None,
) -> None:
    """Every trial of a study: state, value, params, attributes (and curves, in JSON)."""
    from hpo import results, study_store

    loaded = study_store.load(_open(storage), study)
    chosen = format or (ExportFormat.json if output and output.suffix == ".json"
                        else ExportFormat.csv)
    text = results.export_json(loaded) if chosen == ExportFormat.json \
        else results.export_csv(loaded)
    if output is None:
        sys.stdout.write(text)
        return
    if not output.parent.exists():
        raise HpoError(f"The folder '{output.parent}' for --output does not exist: create it "
                       "first.")
    output.write_text(text)
    stderr.print(f"Wrote {len(loaded.trials)} trial(s) of {loaded.study_name} to {output}.")


class State(str, Enum):
    complete = "complete"
    pruned = "pruned"
    fail = "fail"
    running = "running"
    waiting = "waiting"


@app.command()
@_user_errors
def trials(
    study: StoredStudyArg,
    storage: StorageOpt = None,
    state: Annotated[list[State] | None, typer.Option(
        "--state", help="Only trials in this state (repeatable)", show_default=False)] = None,
    top: Annotated[int | None, typer.Option(
        min=1, help="Only the K best trials by value", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout")] = False,
) -> None:
    """List trials: number, state, value, params, duration and epochs."""
    import optuna

    from hpo import results, study_store

    loaded = study_store.load(_open(storage), study)
    chosen = loaded.get_trials(deepcopy=False)
    if state:
        wanted = {s.value.upper() for s in state}
        chosen = [t for t in chosen if t.state.name in wanted]
    if top:
        maximize = loaded.direction == optuna.study.StudyDirection.MAXIMIZE
        chosen = sorted((t for t in chosen if t.value is not None), key=lambda t: t.value,
                        reverse=maximize)[:top]
    records = [results.trial_record(t) for t in chosen]
    if as_json:
        sys.stdout.write(json.dumps(records, default=str) + "\n")
        return
    table = Table(title=f"Trials of {loaded.study_name}", title_justify="left")
    for column in ("#", "state", "value", "epochs", "duration", "params"):
        table.add_column(column, justify="right" if column in ("#", "value", "epochs",
                                                                "duration") else "left")
    for record in records:
        params = ", ".join(f"{k}={_short(v)}" for k, v in record["params"].items())
        duration = record["duration_s"]
        table.add_row(
            str(record["number"]), record["state"].lower(),
            f"{record['value']:.4f}" if record["value"] is not None else "-",
            str(record["user_attrs"].get("epochs_run", "-")),
            f"{duration:.1f} s" if duration is not None else "-", params)
    stdout.print(table)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@app.command()
@_user_errors
def evaluate(
    study: StoredStudyArg,
    trial: Annotated[int | None, typer.Option(
        "--trial", min=0, help="Trial number [default: the best trial]", show_default=False)
    ] = None,
    storage: StorageOpt = None,
    data_dir: DataDirOpt = None,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="Train the trial's params again instead of loading its checkpoint")
    ] = False,
    again: Annotated[bool, typer.Option(
        "--again", help="Measure again even if this trial's test accuracy is recorded")] = False,
    device: Annotated[str | None, typer.Option(
        help="cpu or cuda [default: cuda when available]", show_default=False)] = None,
) -> None:
    """Measure the best (or given) trial's test-set accuracy once, and record it on the study."""
    from hpo import study_store
    from hpo.evaluate import evaluate as run_evaluation

    _setup_logging()
    loaded = study_store.load(_open(storage), study)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_evaluation(loaded, trial_number=trial, data_dir=settings.resolve_data_dir(data_dir),
                            artifact_dir=settings.resolve_artifact_dir(), device=device,
                            retrain=retrain, again=again)
    metric = loaded.user_attrs.get("metric", "value")
    stdout.print(f"Test accuracy of trial {result.trial} of {loaded.study_name}: "
                 f"{result.test_accuracy:.4f} ({result.test_accuracy:.2%}) on {result.images} "
                 f"test images; its {metric} was {result.val_value:.4f}.")
    if result.recorded_before:
        stdout.print(f"(Recorded on {result.measured_at}; pass --again to measure again.)")
    else:
        stdout.print(f"Recorded on the study (from its {result.source} model).")


@app.command()
@_user_errors
def report(
    study: StoredStudyArg,
    storage: StorageOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for the PNGs and summary.md [default: reports/STUDY]",
        show_default=False)] = None,
) -> None:
    """Write the study's plots (PNG) and a Markdown summary that links them."""
    from hpo import study_store
    from hpo.report import write_report

    loaded = study_store.load(_open(storage), study)
    folder = output or Path("reports") / loaded.study_name
    pngs, summary = write_report(loaded, folder)
    for path in [*pngs, summary]:
        stdout.print(str(path))


# -- dashboard ----------------------------------------------------------------------------


@app.command()
@_user_errors
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but 127.0.0.1 exposes an unauthenticated API")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8080,
) -> None:
    """Serve optuna-dashboard on the study storage, with the checkpoint artifacts."""
    from hpo.dashboard import create_server, url_of

    _setup_logging()
    server = create_server(settings.resolve_storage_url(storage), host=host, port=port,
                           artifact_dir=settings.resolve_artifact_dir())
    stderr.print(f"Dashboard on {url_of(server)} (Ctrl-C stops it)", soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
