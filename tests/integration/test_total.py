"""An exact study-wide ``--total``: workers racing for the last slots never overshoot it.

Each worker counts the study's finished and running trials and creates the next one in one
transaction under the study's database lock (hpo.storage.study_lock). Here 8 workers, each with
its own engine and connections as on 8 machines, start together on a study 3 trials short of
its total; without the lock most of them see room and each starts a trial.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.definition import StudyDefinition
from hpo.run import launch
from hpo.run.budget import LocalBudget, counted_finished
from hpo.train.models import MLP
from tests.helpers import make_spec, make_worker

TOTAL = 10
ALREADY_FINISHED = TOTAL - 3
WORKERS = 8


def _slow_objective(trial: optuna.Trial, run) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(0.3)  # long enough for every racer to ask while the first trials still run
    return x


RACE = StudyDefinition(
    name="race", summary="test", dataset="mnist", objective=_slow_objective,
    search_space={"x": FloatDistribution(0.0, 1.0)}, build_model=lambda p: MLP(784, [], 10),
    epochs=1, pruner="none", sampler="random")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def test_racing_workers_fill_the_total_exactly(storage_url: str, mnist_dir: Path) -> None:
    spec = make_spec(storage_url, "tests.integration.test_total:RACE", data_dir=str(mnist_dir),
                     total=TOTAL, trials=None)
    study = launch.prepare(launch.Plan.of(spec)).study
    study.add_trials([create_trial(params={"x": 0.5}, distributions=RACE.search_space, value=0.5)
                      for _ in range(ALREADY_FINISHED)])

    workers = [make_worker(spec, budget=LocalBudget(None)) for _ in range(WORKERS)]
    for worker in workers:  # load the data now, so that all of them reach the check together
        worker._load_data()
    start = threading.Barrier(WORKERS)
    counted = [0] * WORKERS
    errors: list[BaseException] = []

    def race(index: int) -> None:
        try:
            start.wait(timeout=60)
            counted[index] = workers[index].run()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    trials = optuna.load_study(study_name="race", storage=storage_url).get_trials()
    assert counted_finished(trials) == TOTAL
    assert len(trials) == TOTAL, f"{len(trials) - TOTAL} trial(s) over the total"
    assert sorted(t.number for t in trials) == list(range(TOTAL))
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert sum(counted) == TOTAL - ALREADY_FINISHED
