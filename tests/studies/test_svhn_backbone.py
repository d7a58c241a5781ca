"""studies/svhn_backbone.py: the presets, the seed objective, a head-only trial on ImageNet weights
and the feature cache, the error for missing weights, and a small study end to end."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import registry
from hpo.cli import app
from hpo.train import backbones
from hpo.train.trial_run import TrialRun
from studies import svhn_backbone
from tests.helpers import make_spec, run_inline

runner = CliRunner()


def test_seed_preset_lists_the_seed_trials() -> None:
    seed = registry.resolve("svhn-seed").definition
    assert seed.grid == {"backbone": ["alexnet", "vgg16", "resnet18", "resnet50", "resnet101"]}
    assert (seed.sampler, seed.pruner, seed.epochs, seed.trials) == ("grid", "none", 5, 5)
    full = registry.resolve("svhn-backbone").definition
    assert full.pruner == "leaders" and set(full.search_space) == {
        "backbone", "finetune", "lr", "batch_size", "input_size"}


def test_seed_objective_trains_head_only_at_224_with_seed_hyperparameters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(svhn_backbone, "train", lambda run, **kw: seen.update(kw) or 0.5)
    for backbone in svhn_backbone.SEED_BACKBONES:
        trial = optuna.trial.FixedTrial({"backbone": backbone})
        svhn_backbone.seed_objective(trial, run=None)
        assert seen == {"backbone": backbone, "finetune": "head", "input_size": 224,
                        "lr": 1e-3, "batch_size": 64}


def write_fake_imagenet_weights(name: str) -> Path:
    """A state dict in the right shape where torchvision looks for the ImageNet weights."""
    path = backbones.weights_path(backbones.BACKBONES[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    from torchvision import models

    torch.save(models.get_model(name, weights=None).state_dict(), path)
    return path


def test_head_only_trial_uses_imagenet_weights_and_the_cache(
        tmp_path: Path, svhn_dir: Path, unchecked, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_FEATURE_DIR", str(tmp_path / "features"))
    write_fake_imagenet_weights("resnet18")
    spec = make_spec("", "svhn-backbone", data_dir=str(svhn_dir), epochs=3,
                     options={"subset": 1.0, "weights": "imagenet"})
    definition = registry.resolve("svhn-backbone").definition
    timings = []
    for _ in range(2):
        trial = optuna.trial.FixedTrial({})
        run = TrialRun(trial, definition, spec)
        started = time.perf_counter()
        value = svhn_backbone.train(run, backbone="resnet18", finetune="head", input_size=64,
                                    lr=1e-3, batch_size=64)
        timings.append(time.perf_counter() - started)
        assert 0 <= value <= 1
        assert trial.user_attrs["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
        full = run.checkpoint_model()
        assert isinstance(full, torch.nn.Module) and backbones.head_of(full).out_features == 10
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
    assert timings[1] < timings[0]  # the second trial trains on cached features


def test_missing_weights_without_network_stop_before_any_trial(
        tmp_path: Path, svhn_dir: Path, unchecked) -> None:
    db = tmp_path / "hpo.db"
    result = runner.invoke(app, ["launch", "svhn-backbone", "--storage", f"sqlite:///{db}",
                                 "--data-dir", str(svhn_dir), "--subset", "0.5", "--trials",
                                 "1", "--epochs", "1"])
    assert result.exit_code == 1
    assert "The ImageNet weights of alexnet (alexnet-owt-7be5be79.pth) are not in" in result.stderr
    assert "hub/checkpoints" in result.stderr and "--weights none" in result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists()  # refused before the storage was created: nothing half-written


def test_weights_option_is_validated() -> None:
    one_epoch = ["--trials", "1", "--epochs", "1"]
    result = runner.invoke(app, ["launch", "svhn-backbone", "--weights", "coco", "--synthetic",
                                 *one_epoch])
    assert result.exit_code == 1 and "--weights must be imagenet or none" in result.stderr
    result = runner.invoke(app, ["launch", "svhn-seed", "--weights", "none", "--synthetic",
                                 *one_epoch])
    assert result.exit_code == 1 and "--weights does not apply to svhn-seed" in result.stderr


@pytest.mark.slow
def test_three_trial_study_end_to_end(tmp_path: Path, svhn_dir: Path, unchecked) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    request = make_spec(url, "svhn-backbone", trials=3, epochs=2, pruner="hyperband",
                        sampler="tpe", data_dir=str(svhn_dir),
                        options={"subset": 1.0, "weights": "none"})
    from hpo.run import launch

    study = launch.prepare(launch.Plan.of(request)).study
    # Three cheap configurations; the sampler would happily pick VGG-16 at 224 px on a CPU.
    study.enqueue_trial({"backbone": "lenet5", "lr": 3e-3, "batch_size": 64})
    study.enqueue_trial({"backbone": "resnet18", "input_size": 32, "lr": 1e-3, "batch_size": 64})
    study.enqueue_trial({"backbone": "alexnet", "input_size": 64, "lr": 1e-4, "batch_size": 64})
    study = run_inline(request)
    trials = study.get_trials()
    assert [t.params["backbone"] for t in trials] == ["lenet5", "resnet18", "alexnet"]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.user_attrs["weights"] == "none" for t in trials)
    assert all(len(t.intermediate_values) >= 1 for t in trials)
    # The conditional space: LeNet-5 suggests no input size or fine-tuning mode.
    assert "input_size" not in trials[0].params and "finetune" not in trials[0].params
    assert trials[2].distributions["input_size"].low == 64

