"""Finding a study definition from what the user typed: a name, a file or a module.

A study reference is one of:

- **a name**, such as ``mnist-mlp``: a study registered in the ``hpo.studies`` entry-point group.
  hpo's built-in studies are registered there by hpo's own ``pyproject.toml``, exactly as any
  installed package registers its own;
- **a file**, such as ``my_study.py`` or ``path/to/studies.py:CIFAR``: its module-level
  :class:`~hpo.StudyDefinition` (``:NAME`` picks one of several, by attribute or study name);
- **a module**, such as ``mypkg.studies:cifar`` or ``mypkg.studies``.

The reference a study was launched with is recorded on it (files as absolute paths), so
``hpo worker`` and ``hpo evaluate`` on any machine resolve the same definition, or say why not.

**Which recorded references a worker imports.** Storage is shared, and anyone who can write it
(or reach optuna-dashboard's API) can change a recorded reference, which names code that every
joining machine would import. So a reference read from storage is imported only if it is an
installed study's name (an entry point: code that was installed on purpose), a file inside the
current folder (code the person running hpo already works with, as Python itself would import
it from there), or a file, folder or module that the person running the command names: the
study argument of ``hpo worker``, or the ``HPO_TRUSTED_STUDIES`` environment variable (entries
separated by ``:``). Anything else is refused with one sentence saying how to allow it
(:func:`check_trusted`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from hpo.definition import StudyDefinition
from hpo.errors import HpoError, first_line
from hpo.settings import TRUSTED_STUDIES_ENV

ENTRY_POINT_GROUP = "hpo.studies"
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class UnknownStudy(HpoError):
    """A reference that is no installed name, file or module: the caller may know it as a
    stored study's name."""


@dataclass(frozen=True)
class ResolvedStudy:
    definition: StudyDefinition
    # What resolves to the same definition again, on this machine or another one.
    reference: str


@dataclass(frozen=True)
class InstalledStudy:
    name: str
    source: str  # "module:attribute", from the entry point
    package: str | None  # the distribution that registers it


def installed() -> list[InstalledStudy]:
    """Every study registered in the ``hpo.studies`` entry-point group, in name order (a
    package found twice on the path counts once)."""
    seen: dict[tuple[str, str], InstalledStudy] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        package = point.dist.name if point.dist is not None else None
        seen.setdefault((point.name, point.value), InstalledStudy(point.name, point.value, package))
    return sorted(seen.values(), key=lambda study: (study.name, study.source))


def installed_names() -> list[str]:
    return sorted({study.name for study in installed()})


def load_installed(study: InstalledStudy) -> StudyDefinition:
    """The definition an entry point names, checked: it is a StudyDefinition of that name."""
    where = f"the installed study '{study.name}' ({study.source}" + (
        f", from package {study.package})" if study.package else ")")
    try:
        loaded = EntryPoint(study.name, study.source, ENTRY_POINT_GROUP).load()
    except Exception as error:
        raise HpoError(f"Could not load {where}: {first_line(error, typed=True)}; reinstall that "
                       "package, or fix the module it names.") from None
    if not isinstance(loaded, StudyDefinition):
        raise HpoError(f"{_capital(where)} is a {type(loaded).__name__}, not a hpo.StudyDefinition:"
                       " its package registers the wrong object.")
    if loaded.name != study.name:
        raise HpoError(f"{_capital(where)} defines a study named '{loaded.name}': the entry "
                       "point's name and the definition's name must be the same.")
    return loaded


def resolve(reference: str) -> ResolvedStudy:
    """The definition ``reference`` names, or HpoError with one sentence saying why not."""
    return _resolve(reference.strip())


def resolve_recorded(reference: str, study_name: str, *, named: str | None = None
                     ) -> ResolvedStudy:
    """The definition a stored study was launched with, or HpoError saying that its recorded
    reference does not resolve here (``hpo worker`` and ``hpo evaluate`` on another machine)
    or is not trusted (see :func:`check_trusted`; ``named``: the command's study argument)."""
    check_trusted(reference, study_name, named=named)
    try:
        return resolve(reference)
    except HpoError as error:
        raise HpoError(f"Study '{study_name}' was launched with the study '{reference}', which "
                       f"does not resolve on this machine: {error}") from None


def _is_file_reference(target: str) -> bool:
    return target.endswith(".py") or "/" in target or Path(target).is_file()


def _trusted_entries(named: str | None) -> list[str]:
    entries = [named] if named else []
    entries += [entry for entry in os.environ.get(TRUSTED_STUDIES_ENV, "").split(os.pathsep)
                if entry.strip()]
    return [entry.strip().partition(":")[0] if not Path(entry.strip()).is_dir()
            else entry.strip() for entry in entries]


def check_trusted(reference: str, study_name: str, *, named: str | None = None) -> None:
    """HpoError unless the reference read from the stored study ``study_name`` may be imported
    here: an installed study's name, a file inside the current folder, or a file, folder or
    module named by ``named`` (the command's study argument) or HPO_TRUSTED_STUDIES. Imports
    nothing: a module is judged by its name alone."""
    target = reference.strip().partition(":")[0]
    entries = _trusted_entries(named)
    if _is_file_reference(target):
        path = Path(target).expanduser().resolve()
        if path.is_relative_to(Path.cwd().resolve()):
            return
        for entry in entries:
            trusted = Path(entry).expanduser().resolve()
            if path == trusted or (trusted.is_dir() and path.is_relative_to(trusted)):
                return
        kind = "file"
    else:
        if ":" not in reference and target in installed_names():
            return
        if target in entries or target in {s.source.partition(":")[0] for s in installed()}:
            return
        kind = "module"
    raise HpoError(
        f"Study '{study_name}' was launched with the {kind} '{target}', and hpo imports code "
        "named in storage only where you name it too, since others can write storage: give it "
        f"as the study ('hpo worker {target} --study-name {shlex.quote(study_name)}'), or set "
        f"{TRUSTED_STUDIES_ENV}={target} to allow it.")


@functools.cache
def _resolve(reference: str) -> ResolvedStudy:
    if not reference:
        raise HpoError("No study given: name one (see 'hpo studies'), or give a file such as "
                       "my_study.py.")
    target, _, pick = reference.partition(":")
    if _is_file_reference(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise HpoError(f"The study file '{target}' does not exist: check the path (it is "
                           f"relative to the current folder, {Path.cwd()}).")
        module = _import_file(path)
        definition = _not_shadowing(_pick(module, pick, where=f"'{target}'"), target)
        return ResolvedStudy(definition, f"{path}:{pick}" if pick else str(path))
    matches = [study for study in installed() if study.name == target]
    if matches and not pick:
        if len(matches) > 1:
            sources = ", ".join(f"{m.source} from {m.package or 'an unknown package'}"
                                for m in matches)
            raise HpoError(f"Two installed packages register a study named '{target}' "
                           f"({sources}): uninstall one, or refer to one as module:attribute.")
        return ResolvedStudy(load_installed(matches[0]), target)
    if _MODULE_NAME.fullmatch(target) and _module_exists(target):
        try:
            with _as_a_module(f"the study module '{target}'", target):
                module = importlib.import_module(target)
        except HpoError:
            raise
        except Exception as error:
            raise HpoError(f"Could not import the study module '{target}': "
                           f"{first_line(error, typed=True)}.") from None
        definition = _pick(module, pick, where=f"module '{target}'")
        return ResolvedStudy(_not_shadowing(definition, reference), reference)
    known = ", ".join(installed_names()) or "none installed"
    raise UnknownStudy(f"Unknown study '{reference}': choose one of {known} (see 'hpo "
                       "studies'), or give a file (my_study.py) or a module "
                       "(mypkg.studies:NAME).")


def _not_shadowing(definition: StudyDefinition, reference: str) -> StudyDefinition:
    """Refuse a definition that takes the name of a different installed study: stored studies
    are matched to their definition by name, so two studies of one name would mix."""
    for study in installed():
        if study.name == definition.name and load_installed(study) is not definition:
            raise HpoError(f"'{reference}' defines a study named '{definition.name}', which is "
                           f"already the installed study {study.source}: give yours another "
                           "name.")
    return definition


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is missing or not a package
        return False


def _import_file(path: Path) -> ModuleType:
    """Import a study file as a module of its own (once per process). Its folder goes on
    sys.path, as for a script, so it can import the modules beside it."""
    name = f"hpo_study_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    # Read as Python source whatever its suffix, as `python FILE` would: a study file named
    # without .py (an existing file is what the user means) works the same.
    spec = importlib.util.spec_from_file_location(
        name, path, loader=importlib.machinery.SourceFileLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise HpoError(f"'{path}' cannot be imported as Python: give a .py file.")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        with _as_a_module(f"the study file '{path}'", path):
            spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        if isinstance(error, HpoError):
            raise
        raise HpoError(f"Could not import the study file '{path}': "
                       f"{first_line(error, typed=True)}.") from None
    return module


@contextlib.contextmanager
def _as_a_module(what: str, path: Path | str) -> Iterator[None]:
    """Import user code as a module, not as the program: it sees no command line (hpo's holds
    the storage URL and its password, which argparse would echo in its usage error), and
    exiting (sys.exit, argparse, Ctrl-C handling of its own) ends the import with one sentence
    instead of ending hpo, silently and with exit 0 for sys.exit(0)."""
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as stop:
        how = f"sys.exit({stop.code!r})" if isinstance(stop, SystemExit) else "KeyboardInterrupt"
        raise HpoError(f"Importing {what} ended the program ({how}): move code that parses "
                       "arguments or exits under 'if __name__ == \"__main__\":'.") from None
    finally:
        sys.argv = saved


def _pick(module: ModuleType, pick: str, *, where: str) -> StudyDefinition:
    """The module's definition: the one named by ``pick`` (an attribute or a study name), the
    only one it has, or the one called STUDY."""
    found: dict[int, tuple[str, StudyDefinition]] = {}
    for attribute, member in vars(module).items():
        if isinstance(member, StudyDefinition):
            found.setdefault(id(member), (attribute, member))
    by_name: dict[str, list[str]] = {}
    for attribute, definition in found.values():
        by_name.setdefault(definition.name, []).append(attribute)
    for name, attributes in by_name.items():
        if len(attributes) > 1:
            raise HpoError(f"{_capital(where)} defines two studies named '{name}' "
                           f"({' and '.join(attributes)}): give each its own name.")
    if pick:
        value: Any = getattr(module, pick, None)
        if value is None:
            named = [d for _, d in found.values() if d.name == pick]
            if not named:
                raise HpoError(f"{_capital(where)} has no study or attribute '{pick}': it "
                               f"defines {_listing(found)}.")
            value = named[0]
        if not isinstance(value, StudyDefinition):
            raise HpoError(f"'{pick}' in {where} is a {type(value).__name__}, not a "
                           "hpo.StudyDefinition: point at the StudyDefinition object.")
        return value
    if not found:
        raise HpoError(f"{_capital(where)} defines no hpo.StudyDefinition: add one at module "
                       "level, e.g. STUDY = StudyDefinition(...).")
    if len(found) == 1:
        return next(iter(found.values()))[1]
    study = getattr(module, "STUDY", None)
    if isinstance(study, StudyDefinition):
        return study
    raise HpoError(f"{_capital(where)} defines several studies ({_listing(found)}): pick one "
                   "with FILE:NAME, or call the default one STUDY.")


def _listing(found: dict[int, tuple[str, StudyDefinition]]) -> str:
    if not found:
        return "no hpo.StudyDefinition"
    return ", ".join(f"{attribute} ('{d.name}')" for attribute, d in found.values())


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
