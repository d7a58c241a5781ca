"""hpo: hyperparameter optimization for deep-learning training on shared Optuna studies.

What a study file uses is exported here (see the README's "Your own study"):

- :class:`StudyDefinition`: a study's data, search space, objective and launch defaults;
- :class:`Dataset` and :class:`Splits`: where its examples come from, as tensors;
- :class:`TrialRun`: what the objective receives besides the trial (data, device, epochs,
  ``fit`` and ``report``);
- :func:`suggest`: suggest every parameter of a search space at once;
- :class:`HpoError`: raise it with one sentence for a problem the user can fix.

``TrialRun`` is imported on first use, so ``import hpo`` does not import torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("hpo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from hpo.definition import Dataset, Splits, StudyDefinition, suggest  # noqa: E402
from hpo.errors import HpoError  # noqa: E402

if TYPE_CHECKING:
    from hpo.train.trial_run import TrialRun

__all__ = ["Dataset", "HpoError", "Splits", "StudyDefinition", "TrialRun", "suggest",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name == "TrialRun":
        from hpo.train.trial_run import TrialRun

        return TrialRun
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
