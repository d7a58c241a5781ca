"""hpo's search against Optuna's pruners and an outside peer, on LCBench's learning curves.

Each arm searches LCBench's 7 hyperparameters for one task on a simulated cluster
(benchmarks/lcbench_sim.py): W asynchronous workers, a compute budget of 30 median full
trainings of a random configuration summed over the workers, a simulated clock. The arms:

- ``hpo-default``: what a new StudyDefinition gets with no sampler or pruning field set, built by
  hpo's own factories (hpo.search.algorithms), exactly as ``hpo launch`` builds them;
- Optuna as a user would set it up: TPE with no pruning, TPE + MedianPruner, TPE +
  SuccessiveHalvingPruner, TPE + HyperbandPruner, Random + SuccessiveHalvingPruner;
- outside peers (benchmarks/lcbench_peer.py, in an isolated environment);
- any hpo variant being evaluated (``--arms``).

Regret is the gap, in accuracy points, between an arm's final incumbent (the best validation
accuracy of the trials it trained to the last epoch) and the best any arm found on that task.
The speed-up compares, per task and seed, when the best Optuna arm of the task found its final
incumbent with when hpo's default first matched it.

    uv run python benchmarks/lcbench.py --tasks 3945,126026 --seeds 1-10 --workers 4 \\
        --json out.json --png docs/lcbench.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lcbench_sim as sim

# "No worse": a difference under this many accuracy points (issue 15).
TOLERANCE = 0.05


# -- the arms ------------------------------------------------------------------------------


def optuna_space() -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    return {p.name: (IntDistribution(int(p.low), int(p.high), log=p.log) if p.integer
                     else FloatDistribution(p.low, p.high, log=p.log)) for p in sim.SPACE}


def definition(**fields: Any):
    """The StudyDefinition a user would write for an LCBench task: the space and 52 epochs,
    plus ``fields``. Its objective is never called: the simulation reports the curves."""
    from hpo.definition import Dataset, StudyDefinition

    def unused(*args: Any) -> Any:
        raise AssertionError("the simulation reports the learning curves itself")

    dataset = Dataset(name="lcbench", load_splits=unused, load_test=unused)
    return StudyDefinition(name="lcbench", summary="LCBench, simulated", dataset=dataset,
                           objective=unused, search_space=optuna_space(), build_model=unused,
                           epochs=sim.EPOCHS, **fields)


def hpo_arm(**fields: Any) -> Callable[[int, int], OptunaSearch]:
    """hpo's sampler and pruner for a definition with ``fields``, from hpo's own factories."""

    def build(seed: int, workers: int) -> OptunaSearch:
        from hpo.search.algorithms import make_pruner, make_sampler

        chosen = definition(**fields)
        return OptunaSearch(
            lambda worker: make_sampler(chosen.sampler, chosen, seed=seed + worker),
            lambda: make_pruner(chosen.pruner, chosen, epochs=sim.EPOCHS),
            workers=workers, baseline=chosen.baseline)

    return build


def optuna_arm(sampler: str, pruner: str | None) -> Callable[[int, int], OptunaSearch]:
    """Optuna's own sampler and pruner, with Optuna's defaults, as its documentation sets
    them up (Hyperband given the epochs as its maximum resource)."""

    def build(seed: int, workers: int) -> OptunaSearch:
        import optuna

        def make_sampler(worker: int) -> optuna.samplers.BaseSampler:
            if sampler == "tpe":
                return optuna.samplers.TPESampler(seed=seed + worker)
            return optuna.samplers.RandomSampler(seed=seed + worker)

        def make_pruner() -> optuna.pruners.BasePruner:
            if pruner is None:
                return optuna.pruners.NopPruner()
            if pruner == "median":
                return optuna.pruners.MedianPruner()
            if pruner == "sha":
                return optuna.pruners.SuccessiveHalvingPruner()
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=sim.EPOCHS)

        return OptunaSearch(make_sampler, make_pruner, workers=workers)

    return build


@dataclass(frozen=True)
class Arm:
    name: str
    source: str  # "hpo", "optuna" or "peer"
    build: Callable[[int, int], Any] | None  # (seed, workers) -> Searcher; None: a peer


ARMS: dict[str, Arm] = {
    arm.name: arm for arm in (
        Arm("hpo-default", "hpo", hpo_arm()),
        Arm("optuna-tpe", "optuna", optuna_arm("tpe", None)),
        Arm("optuna-tpe-median", "optuna", optuna_arm("tpe", "median")),
        Arm("optuna-tpe-sha", "optuna", optuna_arm("tpe", "sha")),
        Arm("optuna-tpe-hyperband", "optuna", optuna_arm("tpe", "hyperband")),
        Arm("optuna-random-sha", "optuna", optuna_arm("random", "sha")),
    )
}
DEFAULT_ARMS = tuple(ARMS)


def variant(name: str) -> Arm:
    """An hpo variant from its name: ``hpo[field=value,...]`` is hpo-default with those
    StudyDefinition fields changed, e.g. ``hpo[leaders_from=11]`` or
    ``hpo[pruner='asha',min_epochs_before_ranking=5]`` (values as Python literals)."""
    import ast

    if not (name.startswith("hpo[") and name.endswith("]")):
        raise ValueError(name)
    call = ast.parse(f"f({name[4:-1]})", mode="eval").body
    assert isinstance(call, ast.Call)
    fields = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    definition(**fields)  # refuses a field or value a definition would refuse
    return Arm(name, "hpo", hpo_arm(**fields))


def with_patience(arm: Arm, patience: int) -> Arm:
    """``arm`` with ``--patience``: no trial starts once that many finished in a row without
    a new best (the running ones train on)."""
    assert arm.build is not None
    build = arm.build

    def patient(seed: int, workers: int) -> OptunaSearch:
        search = build(seed, workers)
        search.patience = patience
        return search

    return Arm(f"{arm.name}+patience{patience}", arm.source, patient)


class OptunaSearch:
    """An Optuna study in memory, shared by the simulated workers as hpo's workers share one
    in storage: each worker has its own sampler and pruner, as each hpo worker process does.
    Reports and pruning follow hpo's TrialRun: report, then ask the pruner, except for the
    baseline, which always trains to the end."""

    def __init__(self, make_sampler: Callable[[int], Any], make_pruner: Callable[[], Any], *,
                 workers: int, baseline: Mapping[str, Any] | None = None) -> None:
        import optuna

        from hpo.storage.attributes import BASELINE_ATTR

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = optuna.storages.InMemoryStorage()
        self.studies = [optuna.create_study(storage=storage, study_name="lcbench",
                                            direction="maximize", load_if_exists=True,
                                            sampler=make_sampler(worker), pruner=make_pruner())
                        for worker in range(workers)]
        if baseline is not None:
            self.studies[0].enqueue_trial(dict(baseline), user_attrs={BASELINE_ATTR: True})
        self.baseline_attr = BASELINE_ATTR
        self.space = optuna_space()
        self.trials: dict[int, tuple[Any, Any]] = {}  # number -> (study, trial)
        self.ask_seconds = 0.0
        self.prune_seconds = 0.0
        self.patience: int | None = None  # --patience: hpo's own rule, as a worker checks it
        self.limit: int | None = None  # start no more trials than this
        self.costs: dict[int, float] = {}  # trial number -> real seconds of search overhead

    def ask(self, worker: int, now: float) -> sim.Job | None:
        from hpo.definition import suggest
        from hpo.search.stopping import patience_spent

        started = time.perf_counter()
        study = self.studies[worker]
        if self.limit is not None and len(self.costs) >= self.limit:
            return None
        if patience_spent(study.get_trials(deepcopy=False), self.patience, maximize=True):
            return None
        trial = study.ask()
        config = suggest(trial, self.space)
        spent = time.perf_counter() - started
        self.ask_seconds += spent
        self.costs[trial.number] = spent
        self.trials[trial.number] = (study, trial)
        return sim.Job(key=trial.number, config=config)

    def report(self, job: sim.Job, epoch: int, value: float, now: float) -> sim.Decision:
        import optuna

        study, trial = self.trials[job.key]
        started = time.perf_counter()
        try:
            trial.report(value, epoch)
            if epoch == sim.EPOCHS:
                study.tell(trial, value)
                del self.trials[job.key]
                return "complete"
            if not trial.user_attrs.get(self.baseline_attr) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                del self.trials[job.key]
                return "stop"
            return "continue"
        finally:
            spent = time.perf_counter() - started
            self.prune_seconds += spent
            self.costs[job.key] += spent


# -- one task, one seed, every in-process arm ----------------------------------------------

_SURROGATE: sim.Surrogate | None = None


def _surrogate(folder: str | None) -> sim.Surrogate:
    global _SURROGATE
    if _SURROGATE is None:
        _SURROGATE = sim.Surrogate(folder)
    return _SURROGATE


def run_one(task: int, seed: int, arm_names: Sequence[str], workers: int, budget: float,
            folder: str | None) -> list[dict[str, Any]]:
    """Every named in-process arm on ``task`` with ``seed``: one result row per arm."""
    surrogate = _surrogate(folder)
    cache: dict[tuple[float, ...], sim.Curve] = {}

    def curve_of(config: Mapping[str, float]) -> sim.Curve:
        key = tuple(float(config[p.name]) for p in sim.SPACE)
        if key not in cache:
            [cache[key]] = surrogate.curves(task, [config])
        return cache[key]

    rows = []
    for name in arm_names:
        arm = ARMS[name]
        assert arm.build is not None
        started = time.perf_counter()
        searcher = arm.build(seed, workers)
        trace = sim.simulate(searcher, curve_of, workers=workers, budget=budget)
        rows.append(result_row(task, seed, name, trace, budget=budget,
                               seconds=time.perf_counter() - started,
                               search_seconds=searcher.ask_seconds + searcher.prune_seconds))
    return rows


def result_row(task: int, seed: int, arm: str, trace: sim.Trace, *, budget: float,
               seconds: float, search_seconds: float) -> dict[str, Any]:
    final = trace.final
    return {
        "task": task, "seed": seed, "arm": arm,
        "final_val": final.val if final else None,
        "final_test": final.test if final else None,
        "final_time": final.time if final else None,
        "incumbents": [(c.time, c.val, c.test) for c in trace.incumbents()],
        "horizon": trace.horizon, "budget": budget, "compute": round(trace.compute, 3),
        "trials": trace.trials, "epochs": trace.epochs,
        "completed": len(trace.completions), "stopped": trace.stopped, "paused": trace.paused,
        "seconds": round(seconds, 3), "search_seconds": round(search_seconds, 3),
    }


def overhead(task: int, counts: Sequence[int], workers: int, folder: str | None
             ) -> dict[int, float]:
    """hpo-default's own cost per trial in real milliseconds (its sampling and every pruning
    query of the trial) once the study holds each of ``counts`` trials: the mean over the 20
    trials before that count."""
    surrogate = _surrogate(folder)

    def curve_of(config: Mapping[str, float]) -> sim.Curve:
        [curve] = surrogate.curves(task, [config])
        return curve

    assert ARMS["hpo-default"].build is not None
    search = ARMS["hpo-default"].build(0, workers)
    search.limit = max(counts)
    sim.simulate(search, curve_of, workers=workers, budget=math.inf)
    return {count: 1000 * statistics.fmean(search.costs[n] for n in range(count - 20, count))
            for count in counts}


# -- scoring -------------------------------------------------------------------------------


def incumbent_at(row: Mapping[str, Any], when: float) -> float | None:
    value = None
    for t, val, _ in row["incumbents"]:
        if t > when:
            break
        value = val
    return value


def time_to_reach(row: Mapping[str, Any], value: float) -> float:
    for t, val, _ in row["incumbents"]:
        if val >= value - 1e-9:
            return t
    return math.inf


def score(rows: Sequence[Mapping[str, Any]], sources: Mapping[str, str],
          reference: str = "hpo-default") -> dict[str, Any]:
    """Regrets, tasks no worse, test metrics and the speed-up, from every arm's result rows."""
    tasks = sorted({r["task"] for r in rows})
    arms = sorted({r["arm"] for r in rows}, key=lambda a: (a != reference, a))
    by = {(r["task"], r["seed"], r["arm"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    best = {task: max((r["final_val"] for r in rows
                       if r["task"] == task and r["final_val"] is not None), default=math.nan)
            for task in tasks}

    def regret(r: Mapping[str, Any]) -> float:
        return best[r["task"]] - r["final_val"] if r["final_val"] is not None else math.inf

    per_task: dict[int, dict[str, dict[str, float]]] = {}
    for task in tasks:
        per_task[task] = {}
        for arm in arms:
            mine = [by[task, s, arm] for s in seeds if (task, s, arm) in by]
            if not mine:
                continue
            per_task[task][arm] = {
                "mean_regret": statistics.fmean(regret(r) for r in mine),
                "mean_test": statistics.fmean(r["final_test"] if r["final_test"] is not None
                                              else 0.0 for r in mine),
                "mean_trials": statistics.fmean(r["trials"] for r in mine),
            }
    optuna_arms = [a for a in arms if sources.get(a) == "optuna"]
    best_optuna = {task: min(optuna_arms, key=lambda a: per_task[task][a]["mean_regret"])
                   for task in tasks} if optuna_arms else {}

    def against_optuna(ours: str) -> dict[str, Any]:
        """How ``ours`` fares against the best Optuna arm of each task."""
        no_worse = test_no_worse = 0
        speedups: list[float] = []
        strict: list[float] = []
        for task, arm in best_optuna.items():
            mine, theirs = per_task[task][ours], per_task[task][arm]
            no_worse += mine["mean_regret"] <= theirs["mean_regret"] + TOLERANCE
            # LCBench's test metric (balanced accuracy) is a fraction, its validation accuracy
            # a percentage: the tolerance is in points for both.
            test_no_worse += 100 * mine["mean_test"] >= 100 * theirs["mean_test"] - TOLERANCE
            for s in seeds:
                other, row = by.get((task, s, arm)), by.get((task, s, ours))
                if other is None or row is None or other["final_val"] is None:
                    continue
                reached = time_to_reach(row, other["final_val"])
                # Against the best Optuna arm's simulated time (its whole run), and, stricter,
                # against the moment it found its final incumbent.
                speedups.append(other["horizon"] / reached if reached > 0 else math.inf)
                strict.append(other["final_time"] / reached if reached > 0 else math.inf)
        return {"tasks_no_worse": no_worse, "tasks_test_no_worse": test_no_worse,
                "speedup_median": statistics.median(speedups) if speedups else None,
                "speedup_to_found_median": statistics.median(strict) if strict else None}

    arm_summary: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        arm_summary[arm] = {
            "source": sources.get(arm, "hpo"),
            "median_final_regret": statistics.median(regret(r) for r in mine),
            "mean_final_regret": statistics.fmean(regret(r) for r in mine),
            "median_trials": statistics.median(r["trials"] for r in mine),
            "median_completed": statistics.median(r["completed"] for r in mine),
            "median_compute_share": statistics.median(
                r["compute"] / r["budget"] for r in mine) if all("budget" in r for r in mine)
            else None,
            "search_ms_per_trial": 1000 * sum(r["search_seconds"] for r in mine)
            / max(1, sum(r["trials"] for r in mine)),
        }
        if arm_summary[arm]["source"] == "hpo" and best_optuna:
            arm_summary[arm].update(against_optuna(arm))
    summary: dict[str, Any] = {"tasks": len(tasks), "reference": reference}
    if reference in arms:
        summary.update({key: arm_summary[reference][key] for key in (
            "tasks_no_worse", "tasks_test_no_worse", "speedup_median",
            "speedup_to_found_median") if key in arm_summary[reference]})
        summary["best_optuna_arm"] = {str(t): a for t, a in best_optuna.items()}
        ours = arm_summary[reference]["median_final_regret"]
        summary["ahead_of_peers"] = {
            arm: ours < arm_summary[arm]["median_final_regret"]
            for arm in arms if sources.get(arm) == "peer"}
    return {"summary": summary, "arms": arm_summary,
            "tasks": {str(t): v for t, v in per_task.items()}, "best": best}


def regret_curves(rows: Sequence[Mapping[str, Any]], points: int = 60
                  ) -> dict[str, list[tuple[float, float]]]:
    """Per arm: the median regret over tasks and seeds at each fraction of the budget."""
    best: dict[int, float] = {}
    for r in rows:
        if r["final_val"] is not None:
            best[r["task"]] = max(best.get(r["task"], -math.inf), r["final_val"])
    curves: dict[str, list[tuple[float, float]]] = {}
    for arm in sorted({r["arm"] for r in rows}):
        mine = [r for r in rows if r["arm"] == arm]
        curve = []
        for i in range(1, points + 1):
            fraction = i / points
            regrets = []
            for r in mine:
                value = incumbent_at(r, fraction * r["horizon"])
                regrets.append(best[r["task"]] - value if value is not None else math.inf)
            curve.append((fraction, statistics.median(regrets)))
        curves[arm] = curve
    return curves


def draw(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for arm, curve in regret_curves(rows).items():
        xs = [x for x, y in curve if math.isfinite(y)]
        ys = [max(y, 1e-3) for x, y in curve if math.isfinite(y)]
        style = {"linewidth": 2.6, "color": "black"} if arm == "hpo-default" else {"linewidth": 1.4}
        ax.plot(xs, ys, label=arm, **style)
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the compute budget (30 median trainings, 4 workers)")
    ax.set_ylabel("median regret, validation accuracy points")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- the command ---------------------------------------------------------------------------


def parse_ints(text: str) -> list[int]:
    """'1-10' or '3945,126026' or a mix: '1-3,7'."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            out.extend(range(int(low), int(high) + 1))
        else:
            out.append(int(part))
    return out


def split_arms(text: str) -> list[str]:
    """Arm names separated by ';', or by ',' outside brackets."""
    names, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == ";" or (char == "," and depth == 0):
            names.append(current)
            current = ""
        else:
            current += char
    names.append(current)
    return [name.strip() for name in names if name.strip()]


def parse_tasks(text: str) -> list[int]:
    if text == "design":
        return list(sim.DESIGN_TASKS)
    if text == "held-out":
        return list(sim.HELD_OUT_TASKS)
    return parse_ints(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="held-out",
                        help="task ids, comma-separated, or 'design' / 'held-out'")
    parser.add_argument("--seeds", default="1-10", help="seeds: a range 1-10 or a list 1,2,5")
    parser.add_argument("--workers", type=int, default=sim.WORKERS)
    parser.add_argument("--budget", type=float, default=sim.BUDGET_TRAININGS,
                        help="median full trainings per task, summed over the workers")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help=f"in-process arms, separated by ';' or ',' (known: "
                        f"{', '.join(ARMS)}; and hpo variants such as "
                        "'hpo[leaders_from=11,floor=None]')")
    parser.add_argument("--peers", default="syne-asha,syne-bohb,dehb",
                        help="outside peers (benchmarks/lcbench_peer.py), comma-separated, or "
                        "none; each runs in an isolated environment that uv builds")
    parser.add_argument("--patience", default="",
                        help="also run hpo-default with --patience K, for each K (e.g. 50,100)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel processes")
    parser.add_argument("--data", default=None, help=f"the surrogate's folder [default: "
                        f"${sim.DATA_ENV}, else ../shared/data/lcbench]")
    parser.add_argument("--overhead", default="", help="instead of the table: hpo-default's "
                        "own milliseconds per trial at these trial counts (e.g. 100,1000), on "
                        "the first task")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--png", type=Path, default=None, help="draw anytime regret here")
    args = parser.parse_args(argv)

    tasks, seeds = parse_tasks(args.tasks), parse_ints(args.seeds)
    arms = split_arms(args.arms)
    for name in arms:
        if name not in ARMS and name.startswith("hpo["):
            try:
                ARMS[name] = variant(name)
            except (ValueError, SyntaxError) as error:
                parser.error(f"cannot read the arm {name}: {error}")
    for patience in parse_ints(args.patience):
        arm = with_patience(ARMS["hpo-default"], patience)
        ARMS[arm.name] = arm
        arms.append(arm.name)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    try:
        surrogate = sim.Surrogate(args.data)
    except FileNotFoundError as error:
        parser.error(str(error))
    if args.overhead:
        counts = parse_ints(args.overhead)
        for count, ms in overhead(tasks[0], counts, args.workers, args.data).items():
            print(f"hpo-default on task {tasks[0]}: {ms:.1f} ms of sampling and pruning per "
                  f"trial at {count} trials")
        return 0
    budgets = {task: surrogate.budget(task, args.budget) for task in tasks}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    jobs = [(task, seed) for task in tasks for seed in seeds]
    print(f"{len(tasks)} task(s) x {len(seeds)} seed(s) x {len(arms)} arm(s), "
          f"{args.workers} workers, {args.jobs} process(es)", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, task, seed, arms, args.workers, budgets[task],
                               args.data) for task, seed in jobs]
        for done, future in enumerate(futures, start=1):
            rows.extend(future.result())
            if done % max(1, len(jobs) // 20) == 0 or done == len(jobs):
                print(f"  {done}/{len(jobs)} task-seed pairs, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    sources = {name: ARMS[name].source for name in arms}
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    if peers:
        from lcbench_peer import run_peers

        peer_rows = run_peers(peers, tasks, seeds, workers=args.workers, budgets=budgets,
                              data=args.data, jobs=args.jobs)
        rows.extend(peer_rows)
        sources.update({row["arm"]: "peer" for row in peer_rows})
    wall = time.perf_counter() - started
    result = score(rows, sources)
    result["summary"]["wall_seconds"] = round(wall, 1)
    result["settings"] = {"tasks": tasks, "seeds": seeds, "workers": args.workers,
                          "budget_trainings": args.budget, "arms": arms, "peers": peers}
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps({**result, "rows": rows}, indent=1, default=str))
    if args.png:
        draw(rows, args.png, f"LCBench, {len(tasks)} task(s) x {len(seeds)} seed(s)")
    return 0


def print_table(result: Mapping[str, Any]) -> None:
    summary, arms = result["summary"], result["arms"]
    width = max(28, *(len(name) for name in arms))
    print(f"{'arm':<{width}} {'source':<7} {'median regret':>13} {'mean regret':>11} "
          f"{'trials':>7} {'complete':>8} {'ms/trial':>8} {'no worse':>8} {'speed-up':>8}")
    for name, arm in arms.items():
        no_worse = f"{arm['tasks_no_worse']}/{summary['tasks']}" \
            if "tasks_no_worse" in arm else "-"
        speedup = f"{arm['speedup_median']:.2f}x" if arm.get("speedup_median") else "-"
        print(f"{name:<{width}} {arm['source']:<7} {arm['median_final_regret']:>13.3f} "
              f"{arm['mean_final_regret']:>11.3f} {arm['median_trials']:>7.0f} "
              f"{arm['median_completed']:>8.0f} {arm['search_ms_per_trial']:>8.2f} "
              f"{no_worse:>8} {speedup:>8}")
    if "tasks_no_worse" in summary:
        print(f"hpo-default no worse than the best Optuna arm on {summary['tasks_no_worse']} of "
              f"{summary['tasks']} tasks (test metric: {summary['tasks_test_no_worse']}); "
              f"speed-up, median: {summary['speedup_median']:.2f}x (against the moment that "
              f"arm found its incumbent: {summary['speedup_to_found_median']:.2f}x)")
    for peer, ahead in summary.get("ahead_of_peers", {}).items():
        print(f"hpo-default's median final regret is {'below' if ahead else 'NOT below'} "
              f"{peer}'s")
    print(f"wall time {summary.get('wall_seconds', 0):.0f} s")


if __name__ == "__main__":
    sys.exit(main())
