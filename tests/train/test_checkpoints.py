"""hpo/train/checkpoints.py: the best few trials keep their weights as artifacts of their trial,
evicted ones are deleted, and loading a checkpoint never runs code from the file."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

from hpo import _optuna
from hpo.cli import app
from hpo.errors import HpoError
from hpo.train.checkpoints import CheckpointKeeper, load_checkpoint, saved_checkpoints
from tests.helpers import dashboard_study

runner = CliRunner()


def test_best_trials_keep_bounded_checkpoints(finished_study, tmp_path: Path) -> None:
    url, artifacts = finished_study
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    kept = saved_checkpoints(study)
    # A completed trial saves its weights when it beats every trial completed before it, and
    # the newest two such records are kept (keep_checkpoints=2).
    completed = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                       key=lambda t: t.datetime_complete)
    records = [t.number for i, t in enumerate(completed)
               if all(t.value > other.value for other in completed[:i])]
    assert len(records) >= 1 and set(kept) == set(records[-2:])
    best = max((t for t in study.trials if t.value is not None
                and t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.number in kept  # the study's best always has its weights
    # Evicted checkpoints are deleted; a finished trial leaves no resume point behind.
    assert {path.name for path in artifacts.iterdir() if path.is_file()} == {
        meta["artifact_id"] for meta in kept.values()}
    assert not any(path.is_file() for path in (artifacts / "resume").rglob("*"))
    state = load_checkpoint(study, best.number, artifacts)
    assert all(isinstance(t, torch.Tensor) for t in state.values())


def test_eviction_keeps_only_the_best_few(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'k.db'}")
    keeper = CheckpointKeeper(study, tmp_path / "store", keep=2)
    for value in (0.1, 0.5, 0.7, 0.9):
        trial = study.ask()
        assert keeper.offer(trial, lambda: torch.nn.Linear(2, 2), value)
        study.tell(trial, value)
    trial = study.ask()
    assert not keeper.offer(trial, lambda: pytest.fail("built for a worse trial"), 0.2)
    study.tell(trial, 0.2)
    assert sorted(saved_checkpoints(study)) == [2, 3]
    assert len(list((tmp_path / "store").iterdir())) == 2
    # The dashboard shows each kept checkpoint on its own trial's page, and no evicted one.
    shown = dashboard_study(_optuna.storage_of(study), _optuna.study_id_of(study))
    listed = {t["number"]: [a["filename"] for a in t["artifacts"]] for t in shown["trials"]}
    assert listed == {0: [], 1: [], 2: ["trial-00002-value-0.7000.pt"],
                      3: ["trial-00003-value-0.9000.pt"], 4: []}
    assert shown["artifacts"] == []


def test_tampered_checkpoint_is_refused(finished_study_copy, mnist_dir: Path) -> None:
    url, artifacts = finished_study_copy
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    number, meta = next(iter(saved_checkpoints(study).items()))

    class Payload:
        def __reduce__(self):
            return (print, ("this would run on load",))


    (artifacts / meta["artifact_id"]).write_bytes(pickle.dumps(Payload()))
    result = runner.invoke(app, ["evaluate", "mnist-mlp", "--storage", url, "--trial",
                                 str(number), "--data-dir", str(mnist_dir)],
                           env={"HPO_ARTIFACT_DIR": str(artifacts)})
    assert result.exit_code == 1
    assert "is not a plain weights file" in result.stderr and "--retrain" in result.stderr



class CreatesAFile:
    """Unpickling this creates ``path``: what a malicious checkpoint could do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def one_checkpoint(tmp_path: Path) -> tuple[optuna.Study, Path, dict]:
    """A study whose trial 0 has its checkpoint in tmp_path/store."""
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'c.db'}")
    store = tmp_path / "store"
    keeper = CheckpointKeeper(study, store, keep=1)
    trial = study.ask()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    assert keeper.offer(trial, lambda: model, 0.5)
    study.tell(trial, 0.5)
    return study, store, model.state_dict()


def test_a_checkpoint_loads_back_as_the_trained_weights(one_checkpoint) -> None:
    study, store, weights = one_checkpoint
    loaded = load_checkpoint(study, 0, store)
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)
    assert saved_checkpoints(study)[0]["file"] == "trial-00000-value-0.5000.pt"


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(one_checkpoint,
                                                                     tmp_path: Path) -> None:
    """Checkpoints are files anyone with the shared folder can replace: torch.load must read
    them with weights_only=True, which refuses any pickled object but tensors."""
    study, store, _ = one_checkpoint
    marker = tmp_path / "the-payload-ran"
    meta = saved_checkpoints(study)[0]
    torch.save({"weight": torch.zeros(2, 3), "bias": CreatesAFile(marker)},
               store / meta["artifact_id"])
    try:
        loaded = load_checkpoint(study, 0, store)
    except HpoError as error:
        message = str(error)
    else:
        message = f"no error; loaded {loaded}"
    assert not marker.exists(), "loading the checkpoint ran the code pickled in it"
    assert message.startswith(f"The checkpoint of trial 0 ({store / meta['artifact_id']}) is "
                              "not a plain weights file (it holds pickled objects other than "
                              "tensors, which could run code)")
    assert "\x1b" not in message
    assert message.endswith("): delete it, or pass --retrain to train that trial's params "
                            "again.")
    assert "\n" not in message


def test_a_missing_checkpoint_file_or_none_at_all_is_none(one_checkpoint,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    study, store, _ = one_checkpoint
    assert load_checkpoint(study, 7, store) is None  # no trial 7 checkpoint
    (store / saved_checkpoints(study)[0]["artifact_id"]).unlink()
    assert load_checkpoint(study, 0, store) is None
    assert f"The checkpoint file of trial 0 is missing from {store}" in caplog.text


class _DiskFull(io.BytesIO):
    """A checkpoint's bytes that run out half-way, as on a full disk or a killed worker."""

    def read(self, size: int = -1) -> bytes:
        if self.tell() > 0:
            raise OSError(28, "No space left on device")
        return super().read(8)


def test_a_checkpoint_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    """Optuna records an artifact before it writes its file, so a reader could load a
    half-written one: hpo's store writes a temporary file and renames it (issue 18, Part 3)."""
    from hpo.train.checkpoints import artifact_store

    store = artifact_store(tmp_path)
    artifact_id = "0123abcd-0000-4000-8000-000000000000"
    with pytest.raises(OSError):
        store.write(artifact_id, _DiskFull(b"x" * 100))
    assert list(tmp_path.iterdir()) == []  # neither a half file nor a temporary one
    store.write(artifact_id, io.BytesIO(b"whole"))
    assert (tmp_path / artifact_id).read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == [artifact_id]
