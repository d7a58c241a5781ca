"""The LCBench benchmark: the surrogate's answers, the simulated clock, and a small run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import lcbench_sim as sim

try:
    FOLDER = sim.data_folder()
except FileNotFoundError as error:
    FOLDER, MISSING = None, str(error)
else:
    MISSING = ""
needs_surrogate = pytest.mark.skipif(FOLDER is None, reason=MISSING)


@needs_surrogate
def test_the_surrogate_answers_as_pinned() -> None:
    pytest.importorskip("onnxruntime")
    surrogate = sim.Surrogate(FOLDER)
    config = {"batch_size": 64, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.001,
              "num_layers": 3, "max_units": 256, "max_dropout": 0.2}
    out = surrogate.query(3945, [config], [1, 2, 52])[0]
    # elapsed seconds, val_accuracy (%), ..., test_balanced_accuracy, from YAHPO's model.onnx
    np.testing.assert_allclose(out[:, 0], [20.783333, 17.612305, 155.76808], rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], [40.407314, 81.651184, 90.646866], rtol=1e-5)
    np.testing.assert_allclose(out[:, 5], [0.47226295, 0.6283543, 0.6897345], rtol=1e-5)
    [curve] = surrogate.curves(3945, [config])
    # Epoch 2's elapsed time is below epoch 1's: that epoch costs nothing, never less.
    assert curve.cost[0] == pytest.approx(20.783333, rel=1e-5)
    assert curve.cost[1] == 0.0
    assert curve.val[51] == pytest.approx(90.646866, rel=1e-5)
    assert curve.full_cost == pytest.approx(155.76808 + (20.783333 - 17.612305), rel=1e-5)


@needs_surrogate
def test_an_unknown_task_is_refused() -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="LCBench has no task 1"):
        sim.Surrogate(FOLDER).query(1, [dict.fromkeys([p.name for p in sim.SPACE], 1)], [1])


def test_a_missing_surrogate_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pass --data or set HPO_LCBENCH_DIR"):
        sim.data_folder(tmp_path)


class Scripted:
    """Hands out the given configurations in order and stops trial 'b' after epoch 1."""

    def __init__(self, configs: list[dict]) -> None:
        self.configs = list(configs)
        self.asks: list[tuple[int, float, str]] = []

    def ask(self, worker: int, now: float) -> sim.Job | None:
        if not self.configs:
            return None
        config = self.configs.pop(0)
        self.asks.append((worker, now, config["name"]))
        return sim.Job(key=config["name"], config=config)

    def report(self, job: sim.Job, epoch: int, value: float, now: float) -> sim.Decision:
        if epoch == sim.EPOCHS:
            return "complete"
        return "stop" if job.key == "b" and epoch == 1 else "continue"


def flat_curve(cost: float, value: float) -> sim.Curve:
    costs = np.full(sim.EPOCHS, cost)
    return sim.Curve(cost=costs, val=np.full(sim.EPOCHS, value),
                     test=np.full(sim.EPOCHS, value - 1))


def test_two_workers_run_asynchronously_on_the_simulated_clock() -> None:
    curves = {"a": flat_curve(1.0, 80.0), "b": flat_curve(3.0, 60.0), "c": flat_curve(0.5, 90.0)}
    searcher = Scripted([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    trace = sim.simulate(searcher, lambda config: curves[config["name"]], workers=2,
                         budget=2 * 60.0, record_events=True)
    # Worker 0 trains a (1 s an epoch) to the end at 52 s; worker 1 trains b's first epoch
    # (3 s), is told to stop, and takes c (0.5 s an epoch) at 3 s, which ends at 29 s.
    assert searcher.asks == [(0, 0.0, "a"), (1, 0.0, "b"), (1, 3.0, "c")]
    assert trace.events[0] == (1.0, 0, "a", 1, 80.0, "continue")
    assert trace.events[1] == (2.0, 0, "a", 2, 80.0, "continue")
    assert trace.events[2] == (3.0, 0, "a", 3, 80.0, "continue")
    assert trace.events[3] == (3.0, 1, "b", 1, 60.0, "stop")  # same time: worker order
    assert trace.events[4] == (3.5, 1, "c", 1, 90.0, "continue")
    assert [(c.key, c.time) for c in trace.completions] == [("c", 29.0), ("a", 52.0)]
    assert trace.trials == 3 and trace.stopped == 1 and trace.epochs == 1 + 52 + 52
    # The incumbent is the best completed trial so far: c from 29 s on.
    assert [c.key for c in trace.incumbents()] == ["c"]
    assert trace.time_to_reach(85.0) == 29.0 and trace.time_to_reach(95.0) == float("inf")


def test_the_budget_cuts_off_what_is_still_training() -> None:
    curves = {"a": flat_curve(1.0, 80.0), "b": flat_curve(1.0, 70.0)}
    searcher = Scripted([{"name": "a"}, {"name": "b"}])
    # 2 workers x 40 simulated seconds: neither trial reaches epoch 52.
    trace = sim.simulate(searcher, lambda config: curves[config["name"]], workers=2,
                         budget=80.0)
    assert trace.horizon == 40.0
    assert trace.completions == [] and trace.final is None
    # a trains 40 epochs; b is stopped after 1, and worker 1 then has nothing left to run.
    assert trace.epochs == 41 and trace.stopped == 1


@needs_surrogate
def test_a_small_run_end_to_end_gives_the_same_result_for_the_same_seed(tmp_path: Path) -> None:
    """hpo's default and two Optuna arms on one design task, a budget of 4 full trainings."""
    pytest.importorskip("onnxruntime")
    from benchmarks import lcbench

    def run(name: str) -> dict:
        out = tmp_path / name
        assert lcbench.main(["--tasks", "7593", "--seeds", "1-2", "--budget", "4",
                             "--arms", "hpo-default,optuna-tpe,optuna-tpe-median",
                             "--peers", "none", "--jobs", "1", "--data", str(FOLDER),
                             "--json", str(out)]) == 0
        return json.loads(out.read_text())

    first, second = run("a.json"), run("b.json")

    def results(payload: dict) -> list:
        # Everything but the real seconds the run took.
        return [{k: v for k, v in row.items() if k not in ("seconds", "search_seconds")}
                for row in payload["rows"]]

    assert results(first) == results(second)
    assert first["arms"]["hpo-default"]["source"] == "hpo"
    assert first["arms"]["optuna-tpe"]["source"] == "optuna"
    summary = first["summary"]
    assert summary["tasks"] == 1 and summary["tasks_no_worse"] in (0, 1)
    assert summary["speedup_median"] is not None
    for arm in first["arms"].values():
        assert arm["median_final_regret"] >= 0
    # Every trial either completed, was stopped, or was cut off by the budget.
    for row in first["rows"]:
        assert row["completed"] + row["stopped"] <= row["trials"] <= row["completed"] \
            + row["stopped"] + 4
        assert row["compute"] <= row["budget"] + 1e-6


def test_hpo_variants_are_read_from_their_names() -> None:
    from benchmarks import lcbench

    assert lcbench.split_arms("hpo-default,hpo[leaders=0.25,floor=None];optuna-tpe") == [
        "hpo-default", "hpo[leaders=0.25,floor=None]", "optuna-tpe"]
    arm = lcbench.variant("hpo[leaders=0.25,floor=None]")
    assert arm.source == "hpo"
    with pytest.raises(ValueError, match="leaders of study 'lcbench' must be a count"):
        lcbench.variant("hpo[leaders=2.5]")


def _row(arm: str, final_val: float, final_test: float, found_at: float) -> dict:
    """A result row of task 1, seed 1: one incumbent, found at ``found_at`` of 100 seconds."""
    return {"task": 1, "seed": 1, "arm": arm, "final_val": final_val, "final_test": final_test,
            "incumbents": [[found_at, final_val, final_test]], "horizon": 100.0,
            "final_time": found_at, "trials": 10, "completed": 5, "compute": 1.0,
            "budget": 1.0, "search_seconds": 0.1}


@pytest.mark.parametrize(("val", "test", "no_worse", "test_no_worse"), [
    (89.96, 0.9, 1, 1),  # 0.04 points behind in validation: within the tolerance
    (89.9, 0.9, 0, 1),
    (90.0, 0.8996, 1, 1),  # test is a fraction: 0.04 points behind
    (90.0, 0.89, 1, 0),  # a whole point behind in test
])
def test_no_worse_allows_a_twentieth_of_a_point_in_validation_and_test(
        val: float, test: float, no_worse: int, test_no_worse: int) -> None:
    from benchmarks.lcbench import score

    rows = [_row("hpo-default", val, test, 25.0), _row("optuna-tpe", 90.0, 0.9, 80.0)]
    summary = score(rows, {"hpo-default": "hpo", "optuna-tpe": "optuna"})["summary"]
    assert (summary["tasks_no_worse"], summary["tasks_test_no_worse"]) == (no_worse,
                                                                           test_no_worse)


def test_the_speed_up_is_against_the_best_optuna_arm_s_whole_run_and_its_find() -> None:
    from benchmarks.lcbench import score

    rows = [_row("hpo-default", 90.0, 0.9, 25.0), _row("optuna-tpe", 90.0, 0.9, 80.0)]
    summary = score(rows, {"hpo-default": "hpo", "optuna-tpe": "optuna"})["summary"]
    assert summary["speedup_median"] == 100.0 / 25.0
    assert summary["speedup_to_found_median"] == 80.0 / 25.0
