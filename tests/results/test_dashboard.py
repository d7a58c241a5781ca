"""optuna-dashboard, served by ``hpo dashboard`` and read in a real headless Chromium."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from hpo.cli import app
from hpo.results.dashboard import create_server
from hpo.train.checkpoints import saved_checkpoints
from tests.helpers import hpo_process, make_spec, run_inline, wait_for

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mixed_study(tmp_path: Path, mnist_dir: Path) -> tuple[str, optuna.Study]:
    """A study with complete trials from real workers, plus a pruned and a failed one."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = run_inline(make_spec(url, trials=2, epochs=2, data_dir=str(mnist_dir)))
    distributions = study.trials[0].distributions
    params = dict(study.trials[0].params)
    study.add_trial(create_trial(state=TrialState.PRUNED, params=params,
                                 distributions=distributions, intermediate_values={1: 0.11}))
    study.add_trial(create_trial(state=TrialState.FAIL, params=params,
                                 distributions=distributions,
                                 user_attrs={"fail_reason": "RuntimeError: test"}))
    return url, study


@pytest.fixture
def storage_url(sqlite_url: str) -> str:
    """A storage holding a study: all a dashboard needs to start."""
    optuna.create_study(study_name="s", storage=sqlite_url)
    return sqlite_url


@pytest.mark.browser
def test_dashboard_in_a_real_browser(mixed_study, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    url, study = mixed_study
    port = free_port()
    server = hpo_process("dashboard", "--storage", url, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: responds(f"{base}/dashboard"), timeout=60, what="the dashboard")
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/dashboard")
            page.get_by_text("mnist-mlp").first.wait_for(timeout=30_000)

            study_id = study._study_id
            page.goto(f"{base}/dashboard/studies/{study_id}")
            best = max((t for t in study.trials if t.state == TrialState.COMPLETE),
                       key=lambda t: t.value)
            page.get_by_text(f"Best Trial (number={best.number})").wait_for(timeout=30_000)
            assert str(best.value) in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "study.png"), full_page=True)

            page.goto(f"{base}/dashboard/studies/{study_id}/trials")
            page.get_by_text("Trial 3", exact=True).first.wait_for(timeout=30_000)
            shown = set(re.findall(r"\bTrial (\d+)\b", page.inner_text("body")))
            assert shown == {str(t.number) for t in study.trials}  # 4: complete, pruned, fail

            # A trial finished while the page is open appears without a restart or reload.
            study.add_trial(create_trial(value=0.5, params=best.params,
                                         distributions=best.distributions))
            page.get_by_text("Trial 4", exact=True).first.wait_for(timeout=60_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-trials.png"), full_page=True)
            shutil.copy(tmp_path / "study.png", ARTIFACTS / "dashboard-study.png")
            browser.close()
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.fixture
def checkpointed_study(finished_study_copy) -> tuple[str, optuna.Study, Path]:
    """The session's finished study (real workers, checkpoints of its best two), with a worker
    record on trial 5 as a running worker writes it, and the study note refreshed as a trial
    end refreshes it."""
    from hpo.results import note
    from hpo.run.presence import Presence
    from hpo.spec import WorkerSlot

    url, artifacts = finished_study_copy
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    presence = Presence(study._storage, study, WorkerSlot(1, "cpu", "", 2), started_by="launch",
                        grace_period=600)
    presence.on(5, 2, 0.9321)
    presence.write()
    note.refresh(study)
    return url, study, artifacts


@pytest.mark.browser
def test_dashboard_shows_the_checkpoint_on_its_trial_and_hpos_note(checkpointed_study,
                                                                   tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    url, study, artifacts = checkpointed_study
    kept = saved_checkpoints(study)
    number = study.best_trial.number
    checkpoint = kept[number]
    other = next(t.number for t in study.trials if t.number not in kept)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    port = free_port()
    server = hpo_process("dashboard", "--storage", url, "--port", str(port),
                         env={**os.environ, "HPO_ARTIFACT_DIR": str(artifacts)})
    base = f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}"
    try:
        wait_for(lambda: responds(base), timeout=60, what="the dashboard")
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{base}/note")  # the study's Note tab
            page.get_by_text("hpo summary").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "dashboard-note.png"), full_page=True)
            body = page.inner_text("body")
            counts = [(sum(t.state == state for t in study.trials), state.name.lower())
                      for state in (TrialState.COMPLETE, TrialState.PRUNED)]
            assert "Trials: " + ", ".join(f"{n} {state}" for n, state in counts if n) in body
            best = study.best_trial
            assert f"Best val_accuracy: {best.value:.4f} (trial {best.number})" in body
            assert "Test accuracy: not measured yet" in body
            # Which worker runs which trial: host and pid, the trial, its epoch and value.
            assert re.search(rf"{re.escape(worker)}\s+CPU, 2 thread\(s\)\s+trial 5, epoch 2, "
                             r"val_accuracy 0\.9321", body), body

            page.goto(f"{base}/trials")
            page.get_by_text(f"Trial {number}", exact=True).first.click(timeout=30_000)
            page.get_by_text(checkpoint["file"]).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "dashboard-trial-checkpoint.png"),
                            full_page=True)
            body = page.inner_text("body")
            assert "Artifacts" in body and checkpoint["file"] in body
            page.get_by_text(f"Trial {other}", exact=True).first.click()
            page.wait_for_timeout(1000)
            assert checkpoint["file"] not in page.inner_text("body")  # not on the other trial
            browser.close()
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_port_in_use_is_a_clear_error(storage_url: str) -> None:
    url = storage_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["dashboard", "--storage", url, "--port", str(port)])
    assert result.exit_code == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr


def test_binding_beyond_loopback_warns(storage_url: str, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    url = storage_url
    with caplog.at_level(logging.WARNING):
        server = create_server(url, host="0.0.0.0", port=free_port())
    server.server_close()
    assert "no authentication" in caplog.text and "can delete studies" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_server(url, port=free_port()).server_close()
    assert "no authentication" not in caplog.text


def test_dashboard_on_missing_database(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dashboard", "--storage", f"sqlite:///{tmp_path / 'no.db'}"])
    assert result.exit_code == 1 and "There is no hpo database" in result.stderr


@pytest.mark.slow
def test_launch_with_dashboard_prints_its_url(tmp_path: Path, mnist_dir: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    result = runner.invoke(app, ["launch", "mnist-mlp", "--trials", "1", "--epochs", "1",
                                 "--storage", url, "--data-dir", str(mnist_dir), "--dashboard",
                                 "--dashboard-port", str(port)])
    assert result.exit_code == 0, result.stderr
    assert f"Dashboard: http://127.0.0.1:{port}/" in result.stderr
    assert responds(f"http://127.0.0.1:{port}/dashboard")  # still served from this process
