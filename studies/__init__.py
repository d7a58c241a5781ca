"""The study definitions hpo knows, by name.

Adding a study: write one file in this folder that builds a :class:`hpo.StudyDefinition`, then
add it to ``_ALL`` below. Nothing else needs to change.
"""

from __future__ import annotations

from hpo.definition import StudyDefinition
from studies import logreg_loss, mnist_mlp, svhn_backbone

_ALL: list[StudyDefinition] = [
    mnist_mlp.STUDY,
    mnist_mlp.SEED_PRESET,
    logreg_loss.STUDY,
    svhn_backbone.STUDY,
    svhn_backbone.SEED_PRESET,
]

REGISTRY: dict[str, StudyDefinition] = {definition.name: definition for definition in _ALL}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> StudyDefinition:
    """The definition called ``name``; KeyError if there is none."""
    return REGISTRY[name]
