"""hpo: hyperparameter optimization for deep-learning training on shared Optuna studies.

What a study file uses is exported here (see the README's "Your own study"):

- :class:`StudyDefinition`: a study's data, search space, objective and launch defaults;
- :class:`Dataset` and :class:`Splits`: where its examples come from, as tensors;
- :class:`TrialRun`: what the objective receives besides the trial (data, device, epochs,
  ``fit`` and ``report``);
- :func:`suggest`: suggest every parameter of a search space at once;
- :class:`HpoError`: raise it with one sentence for a problem the user can fix.

``TrialRun`` and ``__version__`` are looked up on first use, so ``import hpo`` imports neither
torch nor importlib.metadata (a read command's start pays for neither).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.definition import Dataset, Splits, StudyDefinition, suggest
from hpo.errors import HpoError

if TYPE_CHECKING:
    from hpo.train.trial_run import TrialRun

__all__ = ["Dataset", "HpoError", "Splits", "StudyDefinition", "TrialRun", "__version__",
           "suggest"]


def __getattr__(name: str) -> Any:
    if name == "TrialRun":
        from hpo.train.trial_run import TrialRun

        return TrialRun
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("hpo")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0.0.0+unknown"
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
