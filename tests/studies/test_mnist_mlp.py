"""studies/mnist_mlp.py: the seed's network is expressible and is the baseline, the recipe
standardizes its input, oversized networks are pruned before they train, and the seed preset
replays the seed's grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from hpo import registry
from studies.mnist_mlp import BASELINE, build_model, hidden_widths
from tests.helpers import make_spec, run_inline


def test_seed_network_is_expressible() -> None:
    assert hidden_widths(256, 4, "funnel") == [256, 256, 128, 128]
    model = build_model(BASELINE)
    widths = [layer.out_features for layer in model if isinstance(layer, torch.nn.Linear)]
    assert widths == [256, 256, 128, 128, 10]


def test_mnist_mlp_standardizes_its_input() -> None:
    from studies.mnist_mlp import INPUT_MEAN, INPUT_STD

    model = build_model(BASELINE)
    standardize = model[0]
    pixels = torch.tensor([[-1.0, INPUT_MEAN, INPUT_MEAN + INPUT_STD]])
    assert torch.allclose(standardize(pixels), torch.tensor([[(-1 - INPUT_MEAN) / INPUT_STD,
                                                              0.0, 1.0]]))
    assert {"0.mean", "0.std"} <= set(model.state_dict())  # a checkpoint carries them


def test_a_network_over_the_size_cap_is_pruned_before_it_trains() -> None:
    import optuna

    from studies.mnist_mlp import MAX_WEIGHTS, objective

    class NoTraining:
        def fit(self, *args, **kwargs):
            raise AssertionError("an oversized network must not train")

    huge = {"lr": 1e-3, "width": 1024, "depth": 4, "shape": "constant", "dropout": 0.1,
            "weight_decay": 0.0}
    with pytest.raises(optuna.TrialPruned, match=f"over the cap of {MAX_WEIGHTS:,}"):
        objective(optuna.trial.FixedTrial(huge), NoTraining())


def test_seed_preset_replays_the_seed_grid(sqlite_url: str, mnist_dir: Path) -> None:
    request = make_spec(sqlite_url, "mnist-mlp-seed", trials=10, sampler="grid",
                           data_dir=str(mnist_dir))
    study = run_inline(request)
    trials = study.get_trials()
    # The grid has three points: the launch plans three trials and the sampler stops there.
    assert sorted(t.params["lr"] for t in trials) == [0.001, 0.01, 0.1]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["epochs_run"] == 1 for t in trials)


def test_seed_network_on_mnist_mlp_seed_uses_seed_epochs() -> None:
    definition = registry.resolve("mnist-mlp-seed").definition
    assert (definition.epochs, definition.sampler, definition.pruner) == (5, "grid", "none")
    assert definition.grid == {"lr": [0.001, 0.01, 0.1]}

