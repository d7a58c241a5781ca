"""hpo/spec.py: the launch spec. Each shared setting comes from the flag, else the study's
recorded spec, else the definition, and the record holds exactly the shared settings. (How a
relaunch and a worker read the record back is in tests/run/test_launch.py.)"""

from __future__ import annotations

from hpo import registry
from hpo.spec import RECORDED, LaunchSpec

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




def test_the_data_model_imports_no_layer_above_it() -> None:
    """definition.py and spec.py are what everything else builds on: they import neither the
    engine (run, search, storage, train) nor optuna or torch, so nothing can circle back."""
    import subprocess
    import sys

    code = ("import sys, hpo.definition, hpo.spec; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('optuna', 'torch') or m.startswith(('hpo.run', 'hpo.search', "
            "'hpo.storage', 'hpo.train'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
