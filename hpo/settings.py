"""Where things live by default, and the environment variables that move them.

Every setting resolves the same way: an explicit flag first, then the environment, then the
embedded default. ``--storage`` and ``--data-dir`` do it through typer's ``envvar=`` (hpo/cli.py);
the folders without a flag through the functions below.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORAGE_URL = "sqlite:///storage/hpo.db"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_ARTIFACT_DIR = Path("storage") / "artifacts"
DEFAULT_FEATURE_CACHE_DIR = Path("storage") / "features"

STORAGE_ENV = "HPO_STORAGE"
DATA_DIR_ENV = "HPO_DATA_DIR"
ARTIFACT_DIR_ENV = "HPO_ARTIFACT_DIR"
FEATURE_DIR_ENV = "HPO_FEATURE_DIR"
# Never try to download datasets or weights; fail at once with the "where to put the files" error.
OFFLINE_ENV = "HPO_OFFLINE"
# Test-only: "0" lets generated SVHN files through the checksum check (see README).
VERIFY_CHECKSUMS_ENV = "HPO_VERIFY_CHECKSUMS"
# Test-only: pretend this many GPUs are visible when planning workers (see hpo/run/devices.py).
GPU_COUNT_ENV = "HPO_GPU_COUNT"
# Seconds a launch's storage calls retry through a database outage before the launch gives up
# (LaunchSpec.outage_tolerance). Tests shorten it.
OUTAGE_TOLERANCE_ENV = "HPO_OUTAGE_TOLERANCE"
DEFAULT_OUTAGE_TOLERANCE = 120.0
# Study files, folders of them and modules that hpo worker and hpo evaluate may import when a
# stored study's recorded reference names them (hpo.registry.check_trusted); ":"-separated.
TRUSTED_STUDIES_ENV = "HPO_TRUSTED_STUDIES"


def resolve_artifact_dir(flag: Path | str | None = None) -> Path:
    return Path(flag or os.environ.get(ARTIFACT_DIR_ENV) or DEFAULT_ARTIFACT_DIR)


def resolve_feature_dir() -> Path:
    return Path(os.environ.get(FEATURE_DIR_ENV) or DEFAULT_FEATURE_CACHE_DIR)


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "0") not in ("", "0", "false", "no")


def verify_checksums() -> bool:
    return os.environ.get(VERIFY_CHECKSUMS_ENV, "1") not in ("0", "false", "no")


def cpu_count() -> int:
    """Cores this process may use (respects taskset and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def outage_tolerance() -> float:
    from hpo.errors import HpoError

    text = os.environ.get(OUTAGE_TOLERANCE_ENV, "").strip()
    if not text:
        return DEFAULT_OUTAGE_TOLERANCE
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise HpoError(f"{OUTAGE_TOLERANCE_ENV}={text!r} is not a number of seconds: set it "
                       f"between 1 and 86400, or unset it for the default of "
                       f"{DEFAULT_OUTAGE_TOLERANCE:g}.")
    return seconds
