"""The launch spec read back from storage is untrusted (issue 18, Part 2): every recorded field
is checked as strictly as the flag it stands for, and a recorded study reference is imported
only where the person running the command trusts it (hpo.registry.check_trusted).

Each bad value must end ``hpo worker``, ``hpo launch`` (resume) and ``hpo evaluate`` with one
sentence naming the study, the field and the value: no traceback, no trial created.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from hpo import registry
from hpo.cli import app
from hpo.spec import MAX_EPOCHS, MAX_SEED, MAX_TRIALS, LaunchSpec, check_recorded
from hpo.storage import records
from hpo.storage.attributes import SPEC_ATTR
from hpo.storage.engine import open_storage
from tests.helpers import make_spec

runner = CliRunner()
NAME = "mnist-mlp"
SVHN = registry.resolve("svhn-backbone").definition

# (field, bad value, what the sentence quotes of it); one or more per field class.
BAD_FIELDS = [
    ("seed", -1, "-1"), ("seed", MAX_SEED + 1, str(MAX_SEED + 1)), ("seed", "7", "'7'"),
    ("seed", True, "True"), ("seed", 1.5, "1.5"), ("seed", None, "None"),
    ("epochs", 0, "0"), ("epochs", MAX_EPOCHS + 1, str(MAX_EPOCHS + 1)),
    ("epochs", "many", "'many'"), ("epochs", [3], "[3]"),
    ("total", 0, "0"), ("total", MAX_TRIALS + 1, str(MAX_TRIALS + 1)), ("total", "5", "'5'"),
    ("patience", -1, "-1"),
    ("sampler", "evil", "'evil'"), ("sampler", 3, "3"),
    ("pruner", "[bold]x", "'[bold]x'"), ("pruner", None, "None"),
    ("synthetic", "yes", "'yes'"),
    ("deadline", "tomorrow", "'tomorrow'"), ("deadline", -5, "-5"),
    ("options", ["subset"], "['subset']"),
    ("options", {"unknown": 1}, "option 'unknown'"),
    ("study", 42, "42"), ("study", "", "''"), ("study", "x\x1b[2Jy", "'x\\x1b[2Jy'"),
    ("definition", 5, "5"), ("definition", "", "''"),
]


# One of each field class for the commands, which are slower to run than the rules.
ONE_PER_FIELD = list({case[0]: case for case in reversed(BAD_FIELDS)}.values())


def _id(case: tuple) -> str:
    return f"{case[0]}={case[1]!r}"[:30]


def stored_study(url: str, **changes: Any) -> optuna.Study:
    """A stored mnist-mlp study as hpo launch records it, then with ``changes`` written into its
    recorded spec, as anyone who can write the database could."""
    storage = open_storage(url)
    spec = make_spec(url, study=NAME)
    study, _ = records.create_or_resume(storage, registry.resolve(NAME).definition, NAME,
                                        synthetic=False, spec=spec.record())
    study.set_user_attr(SPEC_ATTR, {**spec.record(), **changes})
    return study


def trial_count(url: str) -> int:
    """Trials asked for (the enqueued baseline waits, and does not count)."""
    trials = optuna.load_study(study_name=NAME, storage=url).trials
    return sum(t.state != optuna.trial.TrialState.WAITING for t in trials)


def assert_refused(result, *needles: str) -> None:
    output = result.stderr + result.stdout
    assert result.exit_code not in (0, None), output
    assert "Traceback" not in output and (result.exception is None
                                          or isinstance(result.exception, SystemExit)), output
    said = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in said, said


# -- the rules, without storage ---------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_FIELDS, ids=_id)
def test_each_bad_recorded_field_is_one_sentence_naming_study_field_and_value(case) -> None:
    field, value, shown = case
    good = make_spec("sqlite:///x.db").record()
    with pytest.raises(Exception) as refused:
        check_recorded({**good, field: value}, "s", definition=registry.resolve(NAME).definition)
    message = str(refused.value)
    assert type(refused.value).__name__ == "HpoError"
    assert "Study 's'" in message and field in message and shown in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("recorded", [[1, 2], "spec", 42, {"evil": 1}], ids=repr)
def test_a_recorded_spec_of_the_wrong_shape_is_refused(recorded) -> None:
    with pytest.raises(Exception, match="Study 's' has"):
        check_recorded(recorded, "s")


@pytest.mark.parametrize(("options", "shown"), [
    ({"subset": 5}, "option 'subset'"), ({"subset": math.nan}, "option 'subset'"),
    ({"subset": "half"}, "option 'subset'"), ({"weights": "/etc/passwd"}, "option 'weights'"),
    ({"weights": "none", "shell": "rm"}, "option 'shell'"), ({1: 2}, "option 1"),
])
def test_recorded_options_are_checked_as_their_flags_and_the_definition(options, shown) -> None:
    with pytest.raises(Exception, match="Study 's' has a bad") as refused:
        LaunchSpec.build(SVHN, reference="svhn-backbone", study_name="s",
                         recorded={"options": options}, flags={}, storage_url="",
                         data_dir="data")
    assert shown in str(refused.value)


def test_a_flag_replaces_a_bad_recorded_value_instead_of_refusing_it() -> None:
    spec = LaunchSpec.build(SVHN, reference="svhn-backbone", study_name="s",
                            recorded={"seed": -1, "options": {"subset": 5}},
                            flags={"seed": 3, "options": {"subset": 0.5}}, storage_url="",
                            data_dir="data")
    assert spec.seed == 3 and spec.options["subset"] == 0.5


def test_a_good_recorded_spec_passes_whole() -> None:
    good = {**make_spec("sqlite:///x.db").record(), "total": None, "deadline": 1.7e9}
    assert check_recorded(good, "s", definition=registry.resolve(NAME).definition) == good


# -- the commands -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ONE_PER_FIELD, ids=_id)
def test_worker_refuses_a_bad_recorded_field_and_creates_no_trial(case, sqlite_url: str) -> None:
    field, value, shown = case
    stored_study(sqlite_url, **{field: value})
    result = runner.invoke(app, ["worker", NAME, "--storage", sqlite_url, "--gpus", "none"])
    assert_refused(result, f"Study '{NAME}'", field, shown)
    assert trial_count(sqlite_url) == 0


@pytest.mark.parametrize("case", [c for c in ONE_PER_FIELD
                                  if c[0] not in ("study", "definition", "deadline")], ids=_id)
def test_launch_resuming_refuses_a_bad_recorded_field(case, sqlite_url: str) -> None:
    field, value, shown = case
    stored_study(sqlite_url, **{field: value})
    result = runner.invoke(app, ["launch", NAME, "--storage", sqlite_url, "--gpus", "none",
                                 "--trials", "1"])
    assert_refused(result, f"Study '{NAME}'", field, shown)
    assert trial_count(sqlite_url) == 0


@pytest.mark.parametrize("case", ONE_PER_FIELD, ids=_id)
def test_evaluate_refuses_a_bad_recorded_field(case, sqlite_url: str) -> None:
    field, value, shown = case
    stored_study(sqlite_url, **{field: value})
    result = runner.invoke(app, ["evaluate", NAME, "--storage", sqlite_url, "--device", "cpu"])
    assert_refused(result, f"Study '{NAME}'", field, shown)


def test_a_recorded_definition_other_than_the_references_is_refused(sqlite_url: str) -> None:
    stored_study(sqlite_url, definition="logreg-loss")
    for command in (["worker", NAME], ["evaluate", NAME, "--device", "cpu"]):
        result = runner.invoke(app, [*command, "--storage", sqlite_url])
        assert_refused(result, f"Study '{NAME}'", "definition", "'logreg-loss'")
    assert trial_count(sqlite_url) == 0


# -- the study reference: code named in storage -----------------------------------------------

PLANTED = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
from studies.mnist_mlp import STUDY
'''


@pytest.fixture
def planted(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    """A study whose recorded reference was changed to a file outside the current folder, which
    writes a marker when imported."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker = tmp_path / "marker"
    study_file = elsewhere / "planted.py"
    study_file.write_text(PLANTED.format(marker=str(marker)))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    stored_study(sqlite_url, study=str(study_file))
    return study_file, marker


@pytest.mark.parametrize("command", [["worker", NAME], ["worker", "--study-name", NAME],
                                     ["evaluate", NAME, "--device", "cpu"]])
def test_a_planted_reference_in_storage_is_never_imported(planted, sqlite_url: str,
                                                          command: list[str]) -> None:
    study_file, marker = planted
    result = runner.invoke(app, [*command, "--storage", sqlite_url])
    assert_refused(result, f"Study '{NAME}'", str(study_file), "HPO_TRUSTED_STUDIES")
    assert not marker.exists()
    assert trial_count(sqlite_url) == 0


@pytest.mark.parametrize("module", ["antigravity", "this", "tests.helpers:NOTHING"])
def test_a_recorded_module_that_no_one_named_is_never_imported(module: str, sqlite_url: str
                                                               ) -> None:
    import sys

    stored_study(sqlite_url, study=module)
    already = module.partition(":")[0] in sys.modules
    result = runner.invoke(app, ["worker", NAME, "--storage", sqlite_url])
    assert_refused(result, f"Study '{NAME}'", module.partition(":")[0], "HPO_TRUSTED_STUDIES")
    assert already or module.partition(":")[0] not in sys.modules


def test_a_recorded_file_is_imported_where_the_worker_names_it(planted, sqlite_url: str,
                                                               monkeypatch) -> None:
    study_file, marker = planted
    monkeypatch.setenv("HPO_TRUSTED_STUDIES", str(study_file.parent))
    registry.check_trusted(str(study_file), NAME)  # a folder named in the variable
    monkeypatch.delenv("HPO_TRUSTED_STUDIES")
    registry.check_trusted(str(study_file), NAME, named=str(study_file))  # the study argument
    registry.check_trusted(f"{study_file}:STUDY", NAME, named=str(study_file))
    registry.check_trusted(NAME, NAME)  # an installed study's name
    monkeypatch.chdir(study_file.parent)
    registry.check_trusted(str(study_file), NAME)  # a file inside the current folder
    assert not marker.exists()  # judging a reference imports nothing
