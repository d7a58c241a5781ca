"""README.md and docs/: every path they name exists, every link leads somewhere, the README
stays short, and its Layout section lists the package's modules as they are."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "deploy").rglob("README.md"))]
# Paths in the repository are named from its root; these are its tracked top-level entries
# that hold code, docs and configuration (storage/, data/ and reports/ hold what hpo writes).
TRACKED_ROOTS = ("hpo/", "studies/", "examples/", "tests/", "benchmarks/", "docs/", "deploy/",
                 ".ci/")
TRACKED_FILES = {"pyproject.toml", "uv.lock", "Dockerfile", "docker-compose.yml",
                 ".env.example", "README.md"}
CODE_SPAN = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def named_paths(text: str) -> set[str]:
    """Repository paths written in code spans: `hpo/cli.py`, `deploy/k8s/`, `pyproject.toml`."""
    found = set()
    for span in CODE_SPAN.findall(text):
        path = span.rstrip(".,:;")
        if path.startswith(TRACKED_ROOTS) or path in TRACKED_FILES:
            found.add(path.split(":")[0])  # a study reference: FILE:NAME
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_path_a_document_names_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = [path for path in sorted(named_paths(text)) if not (ROOT / path).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_of_a_document_leads_somewhere(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path = target.split("#")[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def layout() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def listed_in_layout() -> dict[str, set[str]]:
    """Each top-level entry of the Layout block, with the .py files named under it (a folder
    of hpo/ named on its own line, e.g. "  run/", with the files of its lines)."""
    listed: dict[str, set[str]] = {}
    top = folder = ""
    for line in layout():
        first = line.split()[0] if line.strip() else ""
        if not line.startswith(" "):
            top, folder = first, first
            listed[top] = set()
        elif line.startswith("  ") and not line.startswith("   ") and first.endswith("/"):
            folder = top + first
            listed[folder] = set()
        elif line.startswith("  ") and not line.startswith("   "):
            folder = top
        listed[folder] |= set(re.findall(r"\b[\w]+\.py\b", line))
    return listed


def test_the_layout_lists_every_module_of_the_package_and_nothing_else() -> None:
    listed = listed_in_layout()
    tracked = subprocess.run(["git", "ls-files", "hpo"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    modules = {path for path in tracked if path.endswith(".py")}
    on_disk = {str(path.relative_to(ROOT)) for path in (ROOT / "hpo").rglob("*.py")}
    for folder in sorted({str(Path(path).parent) + "/" for path in modules | on_disk}):
        files = {Path(path).name for path in modules | on_disk
                 if str(Path(path).parent) + "/" == folder} - {"__init__.py"}
        assert listed.get(folder, set()) - {"__init__.py"} == files, folder


def test_every_entry_of_the_layout_exists() -> None:
    for entry, files in listed_in_layout().items():
        assert (ROOT / entry).exists(), entry
        for name in files:
            assert (ROOT / entry / name).exists(), f"{entry}{name}"
