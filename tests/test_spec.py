"""The launch spec: each shared setting comes from the flag, else the study's recorded spec,
else the definition; the recorded part round-trips through the study, and workers and
evaluate read it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo import registry
from hpo.run import launch
from hpo.spec import RECORDED, LaunchSpec
from hpo.storage import records
from tests.helpers import make_spec, run_inline

MNIST = registry.resolve("mnist-mlp").definition


def build(recorded: dict | None = None, **flags) -> LaunchSpec:
    return LaunchSpec.build(MNIST, reference="mnist-mlp", study_name="s", recorded=recorded,
                            flags=flags, storage_url="sqlite:///x.db", data_dir="data")


def test_flags_then_recorded_then_definition() -> None:
    recorded = {"sampler": "random", "epochs": 3, "seed": 7, "synthetic": True, "total": 40,
                "pruner": "median", "options": {}}
    assert build().sampler == MNIST.sampler and build().epochs == MNIST.epochs
    from_record = build(recorded)
    assert (from_record.sampler, from_record.pruner, from_record.epochs, from_record.seed,
            from_record.synthetic, from_record.total) == ("random", "median", 3, 7, True, 40)
    flagged = build(recorded, sampler="tpe", epochs=5, seed=0, total=None)
    assert (flagged.sampler, flagged.epochs, flagged.seed) == ("tpe", 5, 0)  # seed 0 is a flag
    assert flagged.total == 40  # not given: recorded


def test_a_new_study_without_a_seed_draws_one_and_records_it() -> None:
    seeds = {build().seed for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)


def test_options_merge_definition_record_and_flags() -> None:
    svhn = registry.resolve("svhn-backbone").definition
    spec = LaunchSpec.build(svhn, reference="svhn-backbone", study_name="s",
                            recorded={"options": {"subset": 0.5}},
                            flags={"options": {"weights": "none", "subset": None}},
                            storage_url="", data_dir="data")
    assert spec.options == {"subset": 0.5, "weights": "none"}


def test_record_holds_exactly_the_shared_settings() -> None:
    record = build().record()
    assert set(record) == set(RECORDED)
    assert "storage_url" not in record and "data_dir" not in record


def test_the_recorded_spec_is_what_a_relaunch_and_a_worker_use(sqlite_url: str,
                                                               mnist_dir: Path) -> None:
    run_inline(make_spec(sqlite_url, trials=1, epochs=2, seed=11, pruner="median",
                         data_dir=str(mnist_dir)))
    study = records.load(launch.open_for(make_spec(sqlite_url)), "mnist-mlp")
    recorded = records.recorded_spec(study)
    assert (recorded["study"], recorded["epochs"], recorded["seed"], recorded["pruner"]) == (
        "mnist-mlp", 2, 11, "median")
    relaunch = launch.build_spec("mnist-mlp", worker=False, study_name=None,
                                 storage_url=sqlite_url, data_dir=str(mnist_dir),
                                 flags={"epochs": 4})
    assert (relaunch.epochs, relaunch.seed, relaunch.pruner, relaunch.trials) == (
        4, 11, "median", MNIST.trials)
    joined = launch.build_spec(None, worker=True, study_name="mnist-mlp", storage_url=sqlite_url,
                               data_dir=str(mnist_dir), flags={"trials": None})
    assert (joined.epochs, joined.seed, joined.trials, joined.study) == (2, 11, None, "mnist-mlp")


def test_a_grid_launch_defaults_to_the_whole_grid(sqlite_url: str) -> None:
    spec = launch.build_spec("mnist-mlp-seed", worker=False, study_name=None,
                             storage_url=sqlite_url, data_dir="data", flags={})
    assert spec.sampler == "grid" and spec.trials == 3


def test_a_worker_needs_a_study_it_can_find(sqlite_url: str) -> None:
    from hpo.errors import HpoError

    with pytest.raises(HpoError, match="There is no study named 'nope' to join yet"):
        launch.build_spec(None, worker=True, study_name="nope", storage_url=sqlite_url,
                          data_dir="data", flags={})
