"""The ``hpo`` command line: flags in, output out.

Each command turns its flags into a call to the module that does the work (hpo.run.launch,
hpo.reads, hpo.results.*) and prints the result: results on stdout, logs, progress and errors
on stderr. A problem the user can fix ends the command with one sentence and a non-zero exit
code, never a traceback. ``hpo`` starts in hpo/__main__.py, which answers the read commands
before this module (Typer, Rich) is imported; their Typer commands here run the same code.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape

from hpo import logs, plain, reads, settings
from hpo.commands import DESCRIPTION, HELP
from hpo.definition import PRUNER_NAMES, SAMPLER_NAMES
from hpo.errors import HpoError
from hpo.spec import GRACE_PERIOD, HEARTBEAT_INTERVAL, MAX_EPOCHS, MAX_SEED, MAX_TRIALS
from hpo.storage.attributes import describe_stop

if TYPE_CHECKING:
    import optuna

    from hpo.run.launch import Plan, Summary
    from hpo.spec import LaunchSpec

app = typer.Typer(name="hpo", help=DESCRIPTION, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
stderr = plain.console(err=True)

F = TypeVar("F", bound=Callable[..., Any])

Sampler = Enum("Sampler", {name: name for name in SAMPLER_NAMES}, type=str)  # type: ignore[misc]
Pruner = Enum("Pruner", {name: name for name in PRUNER_NAMES}, type=str)  # type: ignore[misc]
ExportFormat = StrEnum("ExportFormat", {name: name for name in reads.FORMATS})  # type: ignore[misc]
State = StrEnum("State", {name: name for name in reads.STATES})  # type: ignore[misc]


# -- shared options -----------------------------------------------------------------------

StudyArg = Annotated[str, typer.Argument(
    help="The study: a name from 'hpo studies', a file (my_study.py[:NAME]) or a module "
         "(mypkg.studies:NAME).", show_default=False)]
StoredStudyArg = Annotated[str, typer.Argument(help="The study's name in storage.",
                                               show_default=False)]
StorageOpt = Annotated[str, typer.Option(
    "--storage", envvar=settings.STORAGE_ENV, show_envvar=True,
    help="SQLAlchemy URL of the study storage")]
DataDirOpt = Annotated[Path, typer.Option(
    "--data-dir", envvar=settings.DATA_DIR_ENV, show_envvar=True, help="Dataset root")]
StudyNameOpt = Annotated[str | None, typer.Option(
    "--study-name", help="Name of the study in storage [default: the definition's name]",
    show_default=False)]
GpusOpt = Annotated[str, typer.Option(help="GPUs to use: all, none, or numbers like 0,2")]
WorkersPerGpuOpt = Annotated[int, typer.Option(min=1, max=64, help="Workers sharing each GPU")]
ThreadsOpt = Annotated[int | None, typer.Option(
    min=1, max=1024, help="CPU threads per worker [default: the cores divided among the "
                          "workers]", show_default=False)]
HeartbeatOpt = Annotated[int, typer.Option(
    min=1, max=3600, help="Seconds between a running trial's heartbeats")]
GraceOpt = Annotated[int, typer.Option(
    min=1, max=86400, help="Seconds without a heartbeat before a trial is failed and retried")]
KeepOpt = Annotated[int, typer.Option(
    min=0, max=1000, help="Checkpoints of the best trials to keep (0: none)")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the plan (workers, devices, storage, budget) and exit")]


def _user_errors(func: F) -> F:
    """Turn HpoError into one sentence on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HpoError as error:
            from hpo.storage.urls import scrub

            message = plain.printable(
                scrub(str(error), os.environ.get(settings.STORAGE_ENV, "")))
            stderr.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _load(storage: str, study: str) -> optuna.Study:
    from hpo.storage import records
    from hpo.storage.engine import open_storage

    return records.load(open_storage(storage, must_exist=True), study)


# -- hpo studies --------------------------------------------------------------------------


@app.command("studies", help=HELP["studies"])
def list_studies() -> None:
    from hpo import registry

    found = registry.installed()
    width = max((len(study.name) for study in found), default=0)
    for study in found:
        try:
            definition = registry.load_installed(study)
        except HpoError as error:
            plain.say(f"{study.name:<{width}}  (cannot be loaded: {error})")
            continue
        defaults = (f"{definition.sampler}/{definition.pruner}, {definition.epochs} epochs, "
                    f"{definition.trials} trials")
        plain.say(f"{definition.name:<{width}}  {definition.summary}  [{defaults}]")
    if not found:
        plain.say("No studies are installed: run 'hpo launch my_study.py' with a file of "
                  "your own.")


# -- hpo launch / hpo worker --------------------------------------------------------------


def _launch(plan: Plan, *, dry_run: bool, dashboard_port: int | None = None) -> None:
    """Print the plan of a dry run, or run the launch and print its summary."""
    from hpo.run import launch
    from hpo.run.supervisor import EXIT_INTERRUPTED

    if dry_run:
        _print_plan(plan.spec, plan.location.masked)
        return
    logs.to_console(stderr)
    if dashboard_port is None:  # with --dashboard, the launch prints the dashboard's URL
        # Before the workers start, while there is something to watch.
        stderr.print(f"Watch it live: {watch_command(plan.spec.storage_url)}", markup=False,
                     highlight=False, soft_wrap=True)
    result = launch.execute(plan, console=stderr, dashboard_port=dashboard_port)
    _print_summary(result.summary, plan.spec.storage_url)
    if result.interrupted:
        stderr.print("Stopped before the budget was spent; launch again to add the rest"
                     + (", resuming the interrupted trials first."
                        if result.summary.interrupted or result.summary.lost else "."),
                     soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.shortfall:
        raise HpoError(result.shortfall)
    if result.stopped is not None:
        plain.say(f"The study was {describe_stop(result.stopped)} (hpo stop); 'hpo launch' or "
                  "'hpo worker' on it goes on"
                  + (", resuming the interrupted trials." if result.stopped.get("now") else "."))
    elif result.done and result.summary.finished < (plan.spec.trials or 0):
        plain.say(f"Done before the budget: {result.done}.")


def _print_plan(spec: LaunchSpec, masked: str) -> None:
    plain.say(f"study:    {spec.study_name} (definition {spec.definition}, from {spec.study})")
    plain.say(f"storage:  {masked}")
    budget = spec.trials if spec.trials is not None else "until stopped"
    total = f", study-wide total {spec.total}" if spec.total is not None else ""
    # The recorded spec comes from storage: nothing in it is markup.
    plain.say(f"budget:   {budget} trial(s){total}, {spec.epochs} epoch(s) each")
    plain.say(f"search:   sampler {spec.sampler}, pruner {spec.pruner}, seed {spec.seed}")
    if spec.patience or spec.deadline is not None:
        stops = [f"after {spec.patience} trials without a new best"] if spec.patience else []
        if spec.deadline is not None:
            ends = time.strftime("%H:%M:%S", time.localtime(spec.deadline))
            stops.append(f"no trial starts after {ends}")
        plain.say(f"done:     {'; '.join(stops)}")
    plain.say(f"data:     {'synthetic' if spec.synthetic else spec.data_dir}")
    for slot in spec.slots:
        gpu = f", CUDA_VISIBLE_DEVICES={slot.cuda_visible_devices}" if slot.device != "cpu" else ""
        plain.say(f"worker {slot.index} -> {slot.device}{gpu}, {slot.threads} thread(s)")


def _print_summary(summary: Summary, storage_url: str) -> None:
    """The trials this launch's workers ran: the states listed add up to the total, and the
    trials lost with their worker are listed apart, since their retries count instead."""
    shown = ", ".join(f"{n} {state.lower()}" for state, n in summary.states.items())
    whose = "its worker" if summary.lost == 1 else "their workers"
    more = (f"; {summary.lost} more lost with {whose} (failed, and queued again with the same "
            "params)") if summary.lost else ""
    if summary.stopped:
        more += (f"; {summary.stopped} more stopped by 'hpo stop --now' (queued again, to "
                 "resume from their last epoch)")
    if summary.interrupted:
        more += (f"; {summary.interrupted} more interrupted (queued again, to resume from "
                 "their last epoch)")
    plain.say(f"Study {summary.study_name} on {summary.storage}: {summary.finished} trial(s) "
              f"finished in this launch ({shown or 'none'}){more}.")
    if summary.wasted is not None:
        plain.say(f"Wasted epochs: {summary.wasted.describe(summary.metric)}.")
    best = summary.best
    if best is not None and best.value is not None:
        plain.say(f"Best {summary.metric} {best.value:.4f} (trial {best.number}):")
        for name, value in best.params.items():
            plain.say(f"  {name:<12} {value}")
        if summary.found is not None:
            plain.say(f"The best was {summary.found.describe()}.")
    plain.say(f"Browse it with: {watch_command(storage_url)}")
    if best is not None:
        import shlex

        name = shlex.quote(summary.study_name)
        plain.say(f"Then: {pasteable(f'evaluate {name}', storage_url)} (its test accuracy), "
                  f"{pasteable(f'report {name}', storage_url)} (plots and a summary)")


def pasteable(command: str, storage_url: str) -> str:
    """``hpo COMMAND`` on this storage, ready to paste. A URL with a password is never printed,
    not even masked (a pasted *** would fail): the command reads it from HPO_STORAGE."""
    import shlex

    from hpo.storage.urls import mask_url

    if storage_url == settings.DEFAULT_STORAGE_URL:
        return f"hpo {command}"
    if mask_url(storage_url) != storage_url:
        return f'hpo {command} --storage "${settings.STORAGE_ENV}"'
    return f"hpo {command} --storage {shlex.quote(storage_url)}"


def watch_command(storage_url: str) -> str:
    """The dashboard command for this storage, ready to paste (see pasteable)."""
    from hpo.storage.urls import mask_url

    line = pasteable("dashboard", storage_url)
    if mask_url(storage_url) != storage_url:
        env = settings.STORAGE_ENV
        line += f" (with {env} set to the storage URL, password included: hpo does not print it)"
    return line


def _slots(gpus: str, workers: int | None, workers_per_gpu: int, threads: int | None) -> tuple:
    from hpo.run.devices import plan_workers

    return tuple(plan_workers(gpus=gpus, workers=workers, workers_per_gpu=workers_per_gpu,
                              threads=threads))


@app.command(help=HELP['launch'])
@_user_errors
def launch(
    study: StudyArg,
    trials: Annotated[int | None, typer.Option(
        min=1, max=MAX_TRIALS, help="Trials to run to an end in this launch [default: the "
        "study's]", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=1024, help="Worker processes [default: one per GPU x --workers-per-gpu, or "
        "1 on CPU]", show_default=False)] = None,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    study_name: StudyNameOpt = None,
    sampler: Annotated[Sampler | None, typer.Option(
        help="Search algorithm [default: the study's]", show_default=False)] = None,
    pruner: Annotated[Pruner | None, typer.Option(
        help="Early stopping of bad trials [default: the study's]", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, max=MAX_EPOCHS, help="Epochs per trial [default: the study's]",
        show_default=False)] = None,
    data_dir: DataDirOpt = settings.DEFAULT_DATA_DIR,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="Train on generated data with the dataset's shapes (smoke runs)")
    ] = False,
    seed: Annotated[int | None, typer.Option(
        min=0, max=MAX_SEED, help="Seed for samplers and training [default: the study's, "
        "else random; recorded on the study]", show_default=False)] = None,
    gpus: GpusOpt = "all",
    workers_per_gpu: WorkersPerGpuOpt = 1,
    threads: ThreadsOpt = None,
    total: Annotated[int | None, typer.Option(
        min=1, max=MAX_TRIALS, help="Study-wide cap: every worker stops once the study holds "
        "this many finished trials", show_default=False)] = None,
    patience: Annotated[int | None, typer.Option(
        min=0, max=MAX_TRIALS, help="Done after this many finished trials in a row without a "
        "new best, on every machine; 0: never [default: the study's last launch's, else never]",
        show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, help="Seconds of wall-clock time for this launch: no trial starts after it, on "
        "any machine; running trials finish [default: none]", show_default=False)] = None,
    subset: Annotated[float | None, typer.Option(
        help="svhn: fraction of the train split to use, e.g. 0.25", show_default=False)] = None,
    weights: Annotated[str | None, typer.Option(
        help="svhn: pretrained weights, imagenet or none", show_default=False)] = None,
    dry_run: DryRunOpt = False,
    dashboard: Annotated[bool, typer.Option(
        "--dashboard", help="Serve optuna-dashboard beside the workers")] = False,
    dashboard_port: Annotated[int, typer.Option(
        min=1, max=65535, help="Port for --dashboard")] = 8080,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    keep_checkpoints: KeepOpt = 3,
) -> None:
    from hpo.run import launch as launching

    plan = launching.plan(
        study, worker=False, study_name=study_name, storage_url=storage,
        data_dir=str(data_dir),
        flags={"trials": trials, "sampler": sampler.value if sampler else None,
               "pruner": pruner.value if pruner else None, "epochs": epochs, "seed": seed,
               "synthetic": True if synthetic else None, "total": total,
               "patience": patience, "timeout": timeout,
               "options": {"subset": subset, "weights": weights}},
        slots=_slots(gpus, workers, workers_per_gpu, threads),
        heartbeat_interval=heartbeat_interval, grace_period=grace_period,
        artifact_dir=str(settings.resolve_artifact_dir()), keep_checkpoints=keep_checkpoints,
        dry_run=dry_run,
    )
    _launch(plan, dry_run=dry_run, dashboard_port=dashboard_port if dashboard else None)


@app.command(help=HELP['worker'])
@_user_errors
def worker(
    study: Annotated[str | None, typer.Argument(
        help="The study: its name in storage, or what 'hpo launch' was given (a name, file or "
             "module) [default: --study-name's recorded study]", show_default=False)] = None,
    trials: Annotated[int | None, typer.Option(
        min=1, max=MAX_TRIALS, help="Most trials this worker runs [default: until the study's "
        "total or Ctrl-C]", show_default=False)] = None,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    study_name: StudyNameOpt = None,
    gpus: GpusOpt = "all",
    workers_per_gpu: WorkersPerGpuOpt = 1,
    workers: Annotated[int | None, typer.Option(
        min=1, max=1024, help="Worker processes on this machine [default: one per GPU, or 1]",
        show_default=False)] = None,
    threads: ThreadsOpt = None,
    total: Annotated[int | None, typer.Option(
        min=1, max=MAX_TRIALS, help="Study-wide cap on finished trials [default: the "
        "launch's]", show_default=False)] = None,
    data_dir: DataDirOpt = settings.DEFAULT_DATA_DIR,
    dry_run: DryRunOpt = False,
    heartbeat_interval: HeartbeatOpt = HEARTBEAT_INTERVAL,
    grace_period: GraceOpt = GRACE_PERIOD,
    keep_checkpoints: KeepOpt = 3,
) -> None:
    from hpo.run import launch as launching

    if study is None and study_name is None:
        raise HpoError("Which study? Give it (hpo worker mnist-mlp, hpo worker my_study.py) or "
                       "its --study-name.")
    plan = launching.plan(
        study, worker=True, study_name=study_name, storage_url=storage, data_dir=str(data_dir),
        flags={"trials": trials, "total": total}, started_by="hpo worker",
        slots=_slots(gpus, workers, workers_per_gpu, threads),
        heartbeat_interval=heartbeat_interval, grace_period=grace_period,
        artifact_dir=str(settings.resolve_artifact_dir()), keep_checkpoints=keep_checkpoints,
        dry_run=dry_run,
    )
    _launch(plan, dry_run=dry_run)


@app.command(help=HELP["stop"])
@_user_errors
def stop(
    study: StoredStudyArg,
    now: Annotated[bool, typer.Option(
        "--now", help="Interrupt the running trials too (FAIL \"stopped\"; the next launch "
        "resumes them from their last epoch)")] = False,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
) -> None:
    reads.stop(storage, study, now=now)


# -- reading results: hpo.reads, also without Typer -------------------------------------


@app.command(help=HELP["status"])
@_user_errors
def status(
    study: Annotated[str | None, typer.Argument(
        help="Only this study [default: every study in storage]", show_default=False)] = None,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout")] = False,
) -> None:
    reads.status(storage, study, as_json=as_json)


@app.command(help=HELP["best"])
@_user_errors
def best(
    study: StoredStudyArg,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout")] = False,
) -> None:
    reads.best(storage, study, as_json=as_json)


@app.command(help=HELP["export"])
@_user_errors
def export(
    study: StoredStudyArg,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    format: Annotated[ExportFormat | None, typer.Option(
        "--format", help="csv or json [default: from --output's suffix, else csv]",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write [default: stdout]", show_default=False)] = None,
) -> None:
    reads.export(storage, study, format=format.value if format else None, output=output)


@app.command(help=HELP["trials"])
@_user_errors
def trials(
    study: StoredStudyArg,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    state: Annotated[list[State] | None, typer.Option(
        "--state", help="Only trials in this state (repeatable)", show_default=False)] = None,
    top: Annotated[int | None, typer.Option(
        min=1, max=MAX_TRIALS, help="Only the K best completed trials by value (with --state, "
        "the K best in those states)", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout")] = False,
) -> None:
    reads.trials(storage, study, states=[s.value for s in state] if state else None, top=top,
                 as_json=as_json)


@app.command(help=HELP['evaluate'])
@_user_errors
def evaluate(
    study: StoredStudyArg,
    trial: Annotated[int | None, typer.Option(
        "--trial", min=0, max=MAX_TRIALS * 100, help="Trial number [default: the best trial]",
        show_default=False)] = None,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    data_dir: DataDirOpt = settings.DEFAULT_DATA_DIR,
    retrain: Annotated[bool, typer.Option(
        "--retrain", help="Train the trial's params again instead of loading its checkpoint")
    ] = False,
    again: Annotated[bool, typer.Option(
        "--again", help="Measure again even if this trial's test accuracy is recorded")] = False,
    device: Annotated[str | None, typer.Option(
        help="cpu or cuda [default: cuda when available]", show_default=False)] = None,
) -> None:
    from hpo.results.evaluate import evaluate as run_evaluation
    from hpo.storage.attributes import metric_name

    logs.to_console(stderr)
    loaded = _load(storage, study)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_evaluation(loaded, trial_number=trial, data_dir=data_dir,
                            artifact_dir=settings.resolve_artifact_dir(), device=device,
                            retrain=retrain, again=again)
    plain.say(f"Test accuracy of trial {result.trial} of {loaded.study_name}: "
              f"{result.test_accuracy:.4f} ({result.test_accuracy:.2%}) on {result.images} "
              f"test images; its {metric_name(loaded)} was {result.val_value:.4f}.")
    if result.recorded_before:
        plain.say(f"(Recorded on {result.measured_at}; pass --again to measure again.)")
    else:
        plain.say(f"Recorded on the study (from its {result.source} model).")


@app.command(help=HELP['report'])
@_user_errors
def report(
    study: StoredStudyArg,
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for the PNGs and summary.md [default: reports/STUDY]",
        show_default=False)] = None,
) -> None:
    from hpo.results.report import default_folder, write_report

    loaded = _load(storage, study)
    folder = output or default_folder(loaded.study_name)
    if folder.exists() and not folder.is_dir():
        raise HpoError(f"The report folder {folder} is a file: pass --output with a folder "
                       "(it is created if missing).")
    try:
        pngs, summary_file = write_report(loaded, folder)
    except OSError as error:
        raise HpoError(f"Cannot write the report into {folder} ({error.strerror or error}): "
                       "pass --output with a folder you can write to.") from None
    for path in [*pngs, summary_file]:
        plain.say(str(path))


# -- dashboard ----------------------------------------------------------------------------


@app.command(help=HELP['dashboard'])
@_user_errors
def dashboard(
    storage: StorageOpt = settings.DEFAULT_STORAGE_URL,
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but 127.0.0.1 exposes an unauthenticated API")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8080,
) -> None:
    from hpo.results.dashboard import create_server, url_of

    logs.to_console(stderr)
    server = create_server(storage, host=host, port=port,
                           artifact_dir=settings.resolve_artifact_dir())
    stderr.print(f"Dashboard on {url_of(server)} (Ctrl-C stops it)", soft_wrap=True,
                 markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
