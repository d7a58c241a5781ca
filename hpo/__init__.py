"""hpo: hyperparameter optimization for deep-learning training on shared Optuna studies.

The engine lives in this package; study definitions live in the top-level ``studies`` package.
What a study file needs is re-exported here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hpo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from hpo.definition import StudyDefinition, suggest  # noqa: E402

__all__ = ["StudyDefinition", "suggest", "__version__"]
