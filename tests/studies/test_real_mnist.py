"""Accuracy on real MNIST: the four original files from ../shared/data/mnist, where present.

The product never reads ../shared; these tests copy the files into a temporary data folder in
torchvision's layout and point hpo at it, as a user's --data-dir.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.data import mnist

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [name for name in mnist.FILES.values()
               if not (SHARED_MNIST / f"{name}.gz").exists()]
    if missing:
        pytest.skip(f"real MNIST is not in {SHARED_MNIST} (missing {', '.join(missing)}.gz)")
    root = tmp_path_factory.mktemp("real-mnist")
    raw = mnist.raw_dir(root)
    raw.mkdir(parents=True)
    for name in mnist.FILES.values():
        with gzip.open(SHARED_MNIST / f"{name}.gz") as packed, (raw / name).open("wb") as out:
            shutil.copyfileobj(packed, out)
    return root


def test_the_seed_network_learns_real_mnist_past_95_percent_in_two_epochs(real_mnist: Path
                                                                          ) -> None:
    """The baseline trial of mnist-mlp, through the study's own objective and recipe (batch
    256, a cosine decay over the two epochs): 95.7% validation when measured."""
    from hpo.train.trial_run import TrialRun
    from studies.mnist_mlp import BASELINE, STUDY
    from tests.helpers import make_spec

    trial = optuna.trial.FixedTrial(dict(BASELINE))
    run = TrialRun(trial, STUDY, make_spec("", "mnist-mlp", epochs=2, data_dir=str(real_mnist)))
    accuracy = STUDY.objective(trial, run)
    assert accuracy > 0.95
    assert run.epochs_run == 2


def test_launch_then_evaluate_measures_the_real_test_set(real_mnist: Path, tmp_path: Path
                                                         ) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    runner = CliRunner()
    # Three epochs (96.6% validation when measured): the launch's seed is random.
    launched = runner.invoke(app, ["launch", "mnist-mlp", "--trials", "1", "--epochs", "3",
                                   "--storage", url, "--data-dir", str(real_mnist)])
    assert launched.exit_code == 0, launched.stderr
    evaluated = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url,
                                    "--data-dir", str(real_mnist)])
    assert evaluated.exit_code == 0, evaluated.stderr
    recorded = optuna.load_study(study_name="mnist-mlp", storage=url).user_attrs["test_accuracy"]
    assert recorded["images"] == 10_000  # the real test split, not the 12k validation split
    assert recorded["value"] > 0.95 and recorded["source"] == "checkpoint"
