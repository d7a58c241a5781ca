"""hpo's summary of a study, kept as its optuna-dashboard note, where a person watching the
dashboard sees it: trials by state, the best value, the test accuracy once measured, and which
worker runs which trial.

Workers refresh it when a trial ends and when they exit, ``hpo evaluate`` when it has measured,
and a launch when it ends: a handful of writes each time, never one per epoch, so the worker
lines are as of the note's time (``hpo status STUDY`` reads them live). What a person writes in
the note below :data:`KEEP_BELOW` survives the refreshes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from hpo import _optuna
from hpo.results.summary import describe_worker, summarize
from hpo.storage.attributes import TEST_ATTR

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from hpo.storage.snapshot import StoredStudy

log = logging.getLogger(__name__)

KEEP_BELOW = "*hpo rewrites the note above this line; what you write below it is kept.*"


def note_text(study: optuna.Study | StoredStudy, *, now: datetime | None = None,
              kept: str = "") -> str:
    """The note's Markdown: hpo's summary of ``study``, then ``kept`` (the person's part)."""
    now = now or datetime.now(UTC)
    summary = summarize(study)
    metric = summary.metric
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items() if n)
    lines = [
        f"### hpo summary, {now:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"- **Trials:** {counts or 'none yet'}",
    ]
    if summary.best_value is not None:
        lines.append(f"- **Best {metric}:** {summary.best_value:.4f} (trial {summary.best_trial})")
    lines.append(_test_line(study.user_attrs.get(TEST_ATTR)))
    lines += ["", f"**Workers** ({len(summary.workers)}, as of this note; "
                  f"`hpo status {study.study_name}` shows them live):", ""]
    if summary.workers:
        # A code block: host names and origins come from storage, and are shown, not rendered.
        shown = [describe_worker(record, metric, now).replace("`", "'")
                 for record in summary.workers]
        lines += ["```", *shown, "```"]
    else:
        lines.append("none running")
    lines += ["", "---", KEEP_BELOW, ""]
    return "\n".join(lines) + kept


def _test_line(test: Any) -> str:
    if not isinstance(test, dict) or not isinstance(test.get("value"), int | float):
        return "- **Test accuracy:** not measured yet (`hpo evaluate`)"
    return (f"- **Test accuracy:** {test['value']:.4f} (trial {test.get('trial', '?')}, "
            f"{test.get('images', '?')} held-out images, {test.get('source', '?')} model, "
            f"measured once by `hpo evaluate` on {test.get('measured_at', '?')})")


def refresh(study: optuna.Study, storage: BaseStorage | None = None) -> None:
    """Rewrite hpo's part of the study note. Never raises: the note is a view of what storage
    already holds, and must not cost a trial or a command its result. ``storage``: the one to
    read and write through, else the study's. A worker passes its storage without retries, so
    that a database gone away ends the worker at its next call, not after an outage's wait
    here first."""
    from hpo.storage.snapshot import StoredStudy

    try:
        storage = storage or _optuna.storage_of(study)
        study_id = _optuna.study_id_of(study)
        current = StoredStudy(study.study_name, cast(Any, study.direction),
                              storage.get_study_user_attrs(study_id),
                              cast(Any, storage.get_all_trials(study_id, deepcopy=False)))
        _, old = _optuna.read_study_note(storage.get_study_system_attrs(study_id))
        kept = old.split(KEEP_BELOW, 1)[1].lstrip("\n") if KEEP_BELOW in old else old
        _optuna.write_study_note(storage, study_id, note_text(current, kept=kept))
    except Exception as error:
        log.debug("Could not refresh the dashboard note of %s: %s", study.study_name, error)
