"""The SVHN backbone study: real-format .mat files through the real loader, checksums,
every backbone's forward and backward pass, head-only freezing, the feature cache, the presets,
a small study end to end, and the error for missing weights."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.train import backbones
from hpo.cli import app
from hpo.data import Splits, svhn
from hpo.errors import HpoError
from hpo.train.features import FeatureCache
from hpo import registry
from hpo.train.trial_run import TrialRun
from studies import svhn_backbone
from tests.helpers import make_spec, run_inline, write_svhn

runner = CliRunner()


@pytest.fixture(scope="session")
def svhn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_svhn(tmp_path_factory.mktemp("svhn"), n_train=400, n_test=100)


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated files cannot match SVHN's MD5s; this is the documented test switch."""
    monkeypatch.setenv("HPO_VERIFY_CHECKSUMS", "0")


def test_generated_mat_files_go_through_the_real_loader(svhn_dir: Path, unchecked) -> None:
    svhn.prepare(svhn_dir)
    images, labels = svhn.read_mat(svhn_dir / "SVHN" / "train_32x32.mat")
    assert images.shape == (400, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.min() >= 0 and labels.max() <= 9 and (labels == 0).any()  # 10 became 0
    splits = svhn.load_splits(svhn_dir, synthetic=False, device=torch.device("cpu"), subset=1.0)
    assert (len(splits.train_x), len(splits.val_x)) == (300, 100)  # 75/25 as in the seed
    assert splits.train_x.dtype == torch.uint8  # resizing happens per batch, on the device


def test_subset_is_a_deterministic_fraction(svhn_dir: Path) -> None:
    a = svhn.subset_indices(400, 0.25)
    b = svhn.subset_indices(400, 0.25)
    assert len(a) == 100 and torch.equal(a, b)
    assert set(svhn.subset_indices(400, 0.5).tolist()) >= set(a.tolist())


def test_checksums_are_verified_by_default(svhn_dir: Path) -> None:
    with pytest.raises(HpoError, match=r"train_32x32.mat is corrupt or truncated \(MD5"):
        svhn.prepare(svhn_dir)


def test_truncated_file_gets_a_clear_error(tmp_path: Path, svhn_dir: Path, unchecked) -> None:
    folder = tmp_path / "SVHN"
    folder.mkdir()
    data = (svhn_dir / "SVHN" / "train_32x32.mat").read_bytes()
    (folder / "train_32x32.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(HpoError, match="cannot be read as an SVHN .mat file"):
        svhn.read_mat(folder / "train_32x32.mat")


def test_missing_svhn_offline_says_where_files_go(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match=r"train_32x32.mat is not in .*SVHN and downloads are off"):
        svhn.prepare(tmp_path)


def test_batch_transform_resizes_and_normalizes_on_the_device() -> None:
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = svhn.batch_transform(96, (0.5,) * 3, (0.5,) * 3)(images)
    assert out.shape == (2, 3, 96, 96) and torch.allclose(out, torch.ones_like(out))


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_every_backbone_trains_a_step_at_its_smallest_size(name: str) -> None:
    size = backbones.BACKBONES[name].input_sizes[0]
    model = backbones.build(name, weights="none")
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert backbones.head_of(model).weight.grad is not None


def test_input_sizes_respect_each_backbone() -> None:
    assert backbones.BACKBONES["lenet5"].input_sizes == [32]
    assert backbones.BACKBONES["alexnet"].input_sizes[0] == 64  # AlexNet needs at least 63 px
    assert backbones.BACKBONES["resnet18"].input_sizes == list(range(32, 225, 32))


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "resnet18"])
def test_head_freezes_exactly_the_backbone(name: str) -> None:
    model = backbones.build(name, weights="none")
    backbones.freeze_all_but_head(model)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in backbones.head_of(model).parameters()}
    assert trainable == head and len(head) == 2


def fake_splits(n: int = 8, dim: int = 4) -> Splits:
    return Splits(torch.randn(n, dim), torch.zeros(n, dtype=torch.long), torch.randn(2, dim),
                  torch.zeros(2, dtype=torch.long), 10)


def test_feature_cache_hits_same_key_misses_other_and_survives_restart(tmp_path: Path) -> None:
    calls = []

    def compute() -> Splits:
        calls.append(1)
        return fake_splits()

    key = {"backbone": "resnet18", "weights": "w", "input_size": 64, "subset": 0.25}
    cache = FeatureCache(tmp_path)
    first = cache.get(key, compute, torch.device("cpu"))
    assert torch.equal(cache.get(key, compute, torch.device("cpu")).train_x, first.train_x)
    assert len(calls) == 1
    cache.get({**key, "input_size": 96}, compute, torch.device("cpu"))
    cache.get({**key, "subset": 0.5}, compute, torch.device("cpu"))
    assert len(calls) == 3
    restarted = FeatureCache(tmp_path)  # a new worker process: memory is empty, disk is not
    assert torch.equal(restarted.get(key, compute, torch.device("cpu")).train_x, first.train_x)
    assert len(calls) == 3 and restarted.hits == 1


def test_feature_cache_never_serves_a_file_written_for_another_key(tmp_path: Path) -> None:
    key = {"backbone": "resnet18", "input_size": 64}
    cache = FeatureCache(tmp_path)
    cache.get(key, fake_splits, torch.device("cpu"))
    path = cache.path({**key, "format": 1})
    stored = torch.load(path, weights_only=True)
    stored["key"] = stored["key"].replace("64", "96")
    torch.save(stored, path)
    fresh = fake_splits()
    served = FeatureCache(tmp_path).get(key, lambda: fresh, torch.device("cpu"))
    assert served is fresh


def test_seed_preset_lists_the_seed_trials() -> None:
    seed = registry.resolve("svhn-seed").definition
    assert seed.grid == {"backbone": ["alexnet", "vgg16", "resnet18", "resnet50", "resnet101"]}
    assert (seed.sampler, seed.pruner, seed.epochs, seed.trials) == ("grid", "none", 5, 5)
    full = registry.resolve("svhn-backbone").definition
    assert full.pruner == "hyperband" and set(full.search_space) == {
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
                                 "--data-dir", str(svhn_dir), "--subset", "0.5"])
    assert result.exit_code == 1
    assert "The ImageNet weights of alexnet (alexnet-owt-7be5be79.pth) are not in" in result.stderr
    assert "hub/checkpoints" in result.stderr and "--weights none" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM studies").fetchone()[0] == 0


def test_weights_option_is_validated() -> None:
    result = runner.invoke(app, ["launch", "svhn-backbone", "--weights", "coco", "--synthetic"])
    assert result.exit_code == 1 and "--weights must be imagenet or none" in result.stderr
    result = runner.invoke(app, ["launch", "svhn-seed", "--weights", "none", "--synthetic"])
    assert result.exit_code == 1 and "--weights does not apply to svhn-seed" in result.stderr


@pytest.mark.slow
def test_three_trial_study_end_to_end(tmp_path: Path, svhn_dir: Path, unchecked) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    request = make_spec(url, "svhn-backbone", trials=3, epochs=2, pruner="hyperband",
                        sampler="tpe", data_dir=str(svhn_dir),
                        options={"subset": 1.0, "weights": "none"})
    from hpo.run import launch

    study = launch.prepare(request, launch.open_for(request)).study
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


def test_synthetic_svhn_matches_the_subset_size() -> None:
    splits = svhn.load_splits(Path("unused"), synthetic=True, device=torch.device("cpu"),
                              subset=0.01)
    n = len(svhn.subset_indices(svhn.TRAIN_SIZE, 0.01))
    assert len(splits.train_x) + len(splits.val_x) == n
    assert splits.train_x.shape[1:] == (3, 32, 32)
    assert np.unique(splits.train_y.numpy()).size == 10
