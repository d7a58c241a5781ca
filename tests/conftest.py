from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_mnist


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test downloads anything or touches the user's ./data and ./storage."""
    monkeypatch.setenv("HPO_OFFLINE", "1")
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("HPO_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small MNIST in the real IDX format, read through the real loader."""
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hpo.db'}"
