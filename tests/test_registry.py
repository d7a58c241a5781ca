"""Study references: installed names, files and modules resolve to definitions, and every way
of getting one wrong is refused with one sentence."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpo import registry
from hpo.cli import app
from hpo.errors import HpoError

runner = CliRunner()

DEFINITION = """
from optuna.distributions import FloatDistribution
from hpo import StudyDefinition

def objective(trial, run):
    return trial.suggest_float("x", 0.0, 1.0)

def {name}_study(name="{name}"):
    return StudyDefinition(name=name, summary="a test study", dataset="mnist",
                           objective=objective, search_space={{"x": FloatDistribution(0.0, 1.0)}},
                           build_model=lambda params: None, epochs=1, trials=1)
"""


def study_file(path: Path, body: str, name: str = "mine") -> Path:
    path.write_text(DEFINITION.format(name=name) + textwrap.dedent(body))
    return path


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Resolution is cached per process; each test starts from what it sets up."""
    registry._resolve.cache_clear()
    yield
    registry._resolve.cache_clear()


def test_an_existing_file_named_without_py_or_a_slash_is_read_as_a_study_file(
        tmp_path: Path) -> None:
    """What a user who types `hpo launch mystudy` beside a file called mystudy means."""
    study_file(tmp_path / "mystudy", "STUDY = mine_study()\n")
    resolved = registry.resolve("mystudy")
    assert resolved.definition.name == "mine"
    assert resolved.reference == str(tmp_path / "mystudy")


def test_an_installed_name_resolves_through_the_entry_points() -> None:
    resolved = registry.resolve("mnist-mlp")
    assert resolved.definition.name == "mnist-mlp" and resolved.reference == "mnist-mlp"
    assert [s.name for s in registry.installed() if s.package == "hpo"] == [
        "logreg-loss", "mnist-mlp", "mnist-mlp-seed", "svhn-backbone", "svhn-seed"]


def test_a_file_resolves_to_its_definition_and_records_its_absolute_path(tmp_path: Path) -> None:
    study_file(tmp_path / "my_study.py", "STUDY = mine_study()\n")
    resolved = registry.resolve("my_study.py")  # relative to the current folder
    assert resolved.definition.name == "mine"
    assert resolved.reference == str(tmp_path / "my_study.py")
    assert registry.resolve(resolved.reference).definition is resolved.definition


def test_file_colon_name_picks_by_attribute_or_by_study_name(tmp_path: Path) -> None:
    path = study_file(tmp_path / "two.py", "A = mine_study('first')\nB = mine_study('second')\n")
    assert registry.resolve(f"{path}:B").definition.name == "second"
    assert registry.resolve(f"{path}:first").definition.name == "first"
    assert registry.resolve(f"{path}:B").reference == f"{path}:B"


def test_a_file_with_several_definitions_uses_the_one_called_study(tmp_path: Path) -> None:
    path = study_file(tmp_path / "two.py", "STUDY = mine_study('main')\nB = mine_study('b')\n")
    assert registry.resolve(str(path)).definition.name == "main"


def test_a_module_reference_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    study_file(package / "studies.py", "cifar = mine_study('cifar')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert registry.resolve("mypkg.studies:cifar").definition.name == "cifar"
    assert registry.resolve("mypkg.studies").definition.name == "cifar"
    assert registry.resolve("mypkg.studies:cifar").reference == "mypkg.studies:cifar"


@pytest.mark.parametrize(("body", "reference", "message"), [
    ("", "nowhere.py", "The study file 'nowhere.py' does not exist: check the path"),
    ("X = 1\n", "bad.py", "'bad.py' defines no hpo.StudyDefinition: add one at module level"),
    ("X = 1\n", "bad.py:X", "'X' in 'bad.py' is a int, not a hpo.StudyDefinition"),
    ("X = 1\n", "bad.py:Y", "'bad.py' has no study or attribute 'Y'"),
    ("A = mine_study('same')\nB = mine_study('same')\n", "bad.py",
     "'bad.py' defines two studies named 'same' (A and B): give each its own name."),
    ("A = mine_study('a')\nB = mine_study('b')\n", "bad.py",
     "'bad.py' defines several studies (A ('a'), B ('b')): pick one with FILE:NAME"),
    ("import not_a_real_package\n", "bad.py",
     "Could not import the study file"),
    ("STUDY = mine_study('mnist-mlp')\n", "bad.py",
     "'bad.py' defines a study named 'mnist-mlp', which is already the installed study "
     "studies.mnist_mlp:STUDY: give yours another name."),
    ("", "no-such-study", "Unknown study 'no-such-study': choose one of logreg-loss, mnist-mlp"),
])
def test_bad_references_get_one_sentence(tmp_path: Path, body: str, reference: str,
                                         message: str) -> None:
    if body:
        study_file(tmp_path / "bad.py", body)
    with pytest.raises(HpoError) as error:
        registry.resolve(reference)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_cli_refuses_a_bad_study_before_writing_anything(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    result = runner.invoke(app, ["launch", "nowhere.py", "--storage", f"sqlite:///{db}",
                                 "--trials", "1", "--epochs", "1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: The study file 'nowhere.py' does not exist")
    assert "Traceback" not in result.stderr and not db.exists()


def install_plugin(site: Path, package: str, entry_points: str, module_body: str = "",
                   module: str = "plugmod") -> None:
    """A distribution on sys.path as pip would leave it: a dist-info folder with entry points."""
    info = site / f"{package}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hpo.studies]\n{entry_points}\n")
    if module_body:
        study_file(site / f"{module}.py", module_body, name="plug")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield folder
    for name in [m for m in sys.modules if m.startswith("plugmod")]:
        del sys.modules[name]


def test_an_installed_package_publishes_its_studies(site: Path) -> None:
    install_plugin(site, "plugpkg", "plug = plugmod:STUDY", "STUDY = plug_study()\n")
    listed = {s.name: s for s in registry.installed()}
    assert listed["plug"].package == "plugpkg" and listed["plug"].source == "plugmod:STUDY"
    assert registry.resolve("plug").definition.name == "plug"
    result = runner.invoke(app, ["studies"])
    assert result.exit_code == 0
    assert any(line.startswith("plug ") and "a test study" in line
               for line in result.stdout.splitlines())


def test_two_packages_with_one_study_name_are_refused(site: Path) -> None:
    install_plugin(site, "plugpkg", "plug = plugmod:STUDY", "STUDY = plug_study()\n")
    install_plugin(site, "otherpkg", "plug = othermod:STUDY")
    with pytest.raises(HpoError, match="Two installed packages register a study named 'plug' "
                                       r"\(othermod:STUDY from otherpkg, plugmod:STUDY from "
                                       r"plugpkg\): uninstall one"):
        registry.resolve("plug")


@pytest.mark.parametrize(("entry", "body", "message"), [
    ("plug = plugmod:NOT_A_STUDY", "NOT_A_STUDY = 3\n",
     "The installed study 'plug' (plugmod:NOT_A_STUDY, from package plugpkg) is a int, not a "
     "hpo.StudyDefinition"),
    ("plug = plugmod:STUDY", "STUDY = plug_study('renamed')\n",
     "defines a study named 'renamed': the entry point's name and the definition's name must "
     "be the same."),
    ("plug = missingmod:STUDY", "",
     "Could not load the installed study 'plug' (missingmod:STUDY, from package plugpkg)"),
])
def test_broken_plugins_are_named(site: Path, entry: str, body: str, message: str) -> None:
    install_plugin(site, "plugpkg", entry, body)
    with pytest.raises(HpoError) as error:
        registry.resolve("plug")
    assert message in str(error.value)
    result = runner.invoke(app, ["studies"])  # the listing still works, and names the problem
    line = next(line for line in result.stdout.splitlines() if line.startswith("plug "))
    assert result.exit_code == 0 and "(cannot be loaded: " in line
    assert "mnist-mlp " in result.stdout


def test_a_recorded_reference_that_does_not_resolve_here_says_so(tmp_path: Path) -> None:
    gone = tmp_path / "gone.py"
    with pytest.raises(HpoError) as raised:
        registry.resolve_recorded(str(gone), "digits")
    assert str(raised.value).startswith(
        f"Study 'digits' was launched with the study '{gone}', which does not resolve on this "
        f"machine: The study file '{gone}' does not exist")
    assert registry.resolve_recorded("mnist-mlp", "s").definition.name == "mnist-mlp"


def test_a_study_file_that_parses_arguments_at_import_sees_none(tmp_path: Path) -> None:
    """argparse at import would read hpo's command line, fail with exit 2 and echo it, the
    storage password included; the file sees only its own name, so it loads."""
    path = study_file(tmp_path / "args.py", """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.1)
        ARGS = parser.parse_args()
        STUDY = mine_study()
    """)
    result = runner.invoke(app, ["launch", str(path), "--storage",
                                 "postgresql+psycopg://me:s3cret-pw@127.0.0.1:1/db", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output
    assert "study:    mine" in result.stdout


@pytest.mark.parametrize(("body", "how"), [
    ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    ("import argparse\nargparse.ArgumentParser().add_argument('x')\n"
     "argparse.ArgumentParser(prog='p').parse_args(['--bad'])\n", "sys.exit(2)"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
])
def test_a_study_file_that_exits_at_import_is_one_sentence(tmp_path: Path, body: str,
                                                           how: str) -> None:
    path = study_file(tmp_path / "exits.py", body + "STUDY = mine_study()\n")
    result = runner.invoke(app, ["launch", str(path), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert f"Importing the study file '{path}' ended the program ({how})" in result.stderr
    assert "Traceback" not in result.output
