"""hpo's built-in studies, written exactly as a user's own study would be.

Each file builds :class:`hpo.StudyDefinition` objects; ``pyproject.toml`` registers them in the
``hpo.studies`` entry-point group, the same way any installed package publishes its studies.
hpo itself never imports this package: it finds these studies through the entry points.
"""
