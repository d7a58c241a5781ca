"""The names of the attributes hpo records on studies and trials, in one place.

They are what the dashboard shows and what every reader of a study (status, report, evaluate,
workers on other machines) looks up. This module imports nothing heavy, so the read-only
commands can use it.
"""

from __future__ import annotations

from typing import Any

# On studies (user attributes):
DEFINITION_ATTR = "definition"  # the definition's name, written last when a study is created
SYNTHETIC_ATTR = "synthetic"
METRIC_ATTR = "metric"
DATASET_ATTR = "dataset"
HPO_VERSION_ATTR = "hpo_version"
SPEC_ATTR = "launch_spec"  # the recorded part of the latest LaunchSpec (hpo.spec.RECORDED)
TEST_ATTR = "test_accuracy"  # hpo evaluate's measurement, recorded once

# On trials (user attributes):
BASELINE_ATTR = "baseline"  # the trial enqueued from StudyDefinition.baseline
FAIL_REASON_ATTR = "fail_reason"
# How the fail_reason of a trial whose worker was lost begins (killed, crashed, stopped beating):
# such a trial does not count against a budget, because its retry, with the same params, does.
LOST_REASON = "worker lost"
PRUNED_REASON_ATTR = "pruned_reason"
EPOCHS_RUN_ATTR = "epochs_run"
RESUMED_FROM_ATTR = "resumed_from_epoch"  # a retry that went on from its original's epoch
SECONDS_PER_EPOCH_ATTR = "seconds_per_epoch"


def metric_name(study: Any) -> str:
    """The study's metric (what its values measure), "value" for studies hpo did not make."""
    return str(study.user_attrs.get(METRIC_ATTR, "value"))
