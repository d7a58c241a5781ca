"""Pruning from the first trial: the floor and the baseline's curve, in front of Hyperband."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from hpo.search.algorithms import make_pruner
from hpo.search.pruning import GuardedPruner
from hpo.storage.attributes import BASELINE_ATTR
from studies.mnist_mlp import STUDY as MNIST

EPOCHS = 15
# The rules as a study sets them by hand, as mnist-mlp did until 2026-12-02: a constant floor,
# a margin behind the baseline, the best 5 from epoch 3 and an Optuna pruner from epoch 2.
STUDY = replace(MNIST, name="guarded", pruner="asha", floor=0.5, baseline_margin=0.01,
                leaders=5, leaders_from=3, min_epochs_before_ranking=2)


def new_study(pruner_name: str = "hyperband", direction: str = "maximize",
              definition=STUDY) -> optuna.Study:
    pruner = make_pruner(pruner_name, definition, epochs=EPOCHS)
    return optuna.create_study(direction=direction, pruner=pruner,
                               sampler=optuna.samplers.RandomSampler(seed=0))


def report(trial: optuna.Trial, values: list[float]) -> int | None:
    """Report ``values`` epoch by epoch; return the epoch at which the pruner stops the
    trial, or None if it never does."""
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            return epoch
    return None


def add_baseline(study: optuna.Study, curve: list[float], *, finish: bool = True) -> None:
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    baseline = study.ask()
    for epoch, value in enumerate(curve, start=1):
        baseline.report(value, epoch)
    if finish:
        study.tell(baseline, curve[-1])


def test_a_chance_level_first_trial_stops_at_once() -> None:
    """The first trial of a study has no peers: Hyperband alone lets it run to the end."""
    chance = [0.11] * EPOCHS
    plain = optuna.create_study(direction="maximize", pruner=optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=EPOCHS, reduction_factor=3))
    assert report(plain.ask(), chance) is None

    study = new_study()
    trial = study.ask()
    assert report(trial, chance) == 1
    assert study.pruner.last_reason == "val_accuracy 0.1100 at epoch 1 is below the floor 0.5"


@pytest.mark.parametrize("pruner_name", ["hyperband", "asha", "median"])
def test_no_trial_below_half_trains_past_epoch_two(pruner_name: str) -> None:
    study = new_study(pruner_name)
    assert report(study.ask(), [0.55, 0.45, 0.9]) == 2


def test_a_trial_clearly_behind_the_baseline_stops() -> None:
    study = new_study()
    baseline = [0.955, 0.970, 0.975, 0.978] + [0.98] * (EPOCHS - 4)
    add_baseline(study, baseline)
    # Within a point of the baseline at epoch 1, 1.5 points behind at epoch 2.
    trial = study.ask()
    assert report(trial, [0.946, 0.955, 0.99]) == 2
    assert study.pruner.last_reason == ("val_accuracy 0.9550 at epoch 2 is more than 0.01 "
                                        "behind the baseline's 0.9700")


def test_a_trial_level_with_the_baseline_is_left_to_hyperband() -> None:
    study = new_study()
    add_baseline(study, [0.955, 0.970, 0.975])
    trial = study.ask()
    # Alone in its Hyperband bracket but for the baseline, never behind it: it runs on.
    assert report(trial, [0.96, 0.972, 0.976]) is None


def test_the_curve_of_a_running_baseline_counts_up_to_where_it_is() -> None:
    # The guard alone (no peer ranking, no floor), so only the baseline's curve decides.
    study = optuna.create_study(direction="maximize", pruner=GuardedPruner(
        optuna.pruners.NopPruner(), baseline_margin=0.01, metric="val_accuracy"))
    add_baseline(study, [0.955, 0.970], finish=False)
    # Epoch 3, which the baseline has not reached yet, is not compared.
    assert report(study.ask(), [0.950, 0.965, 0.90]) is None
    late = study.ask()
    assert report(late, [0.95, 0.94]) == 2
    assert "behind the baseline's 0.9700" in study.pruner.last_reason


def test_a_running_baseline_s_curve_is_read_again_as_it_grows() -> None:
    """In a launch with several workers the baseline is still running while others train: each
    epoch it adds is compared from then on, not only those it had when first read."""
    study = optuna.create_study(direction="maximize", pruner=GuardedPruner(
        optuna.pruners.NopPruner(), baseline_margin=0.01, metric="val_accuracy"))
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    baseline = study.ask()
    baseline.report(0.955, 1)
    assert report(study.ask(), [0.950, 0.90]) is None  # epoch 2: the baseline is not there yet
    baseline.report(0.970, 2)
    assert report(study.ask(), [0.950, 0.90]) == 2
    assert "behind the baseline's 0.9700" in study.pruner.last_reason


@pytest.mark.parametrize(("value", "stops"), [(0.52, True), (0.505, False), (0.45, False)])
def test_minimize_measures_the_margin_above_the_baseline_s_loss(value: float,
                                                                 stops: bool) -> None:
    study = optuna.create_study(direction="minimize", pruner=GuardedPruner(
        optuna.pruners.NopPruner(), baseline_margin=0.01, metric="val_loss"))
    add_baseline(study, [0.50, 0.40])
    assert (report(study.ask(), [value]) == 1) == stops
    if stops:
        assert study.pruner.last_reason == ("val_loss 0.5200 at epoch 1 is more than 0.01 "
                                            "behind the baseline's 0.5000")


def test_the_baseline_is_never_judged_against_itself() -> None:
    study = new_study()
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    baseline = study.ask()
    baseline.report(0.96, 1)
    assert not study.pruner.prune(study, study.trials[0])


def test_no_pruner_means_no_guards_either() -> None:
    study = new_study("none")
    assert report(study.ask(), [0.1] * 3) is None


def test_minimize_turns_the_floor_into_a_ceiling() -> None:
    definition = replace(STUDY, floor=2.0, baseline_margin=None, direction="minimize")
    study = new_study(direction="minimize", definition=definition)
    assert report(study.ask(), [1.5, 2.5]) == 2
    assert "above the floor 2" in study.pruner.last_reason


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cannot be negative but got -0\.1"):
        GuardedPruner(optuna.pruners.NopPruner(), baseline_margin=-0.1)


def test_peers_rank_a_trial_only_from_the_study_s_first_ranked_epoch() -> None:
    """A study that ranks from epoch 2: a slow first epoch alone does not stop a trial."""
    assert STUDY.min_epochs_before_ranking == 2
    study = new_study("asha")
    for value in (0.97, 0.975, 0.98):
        leader = study.ask()
        assert report(leader, [value, value + 0.005]) is None
        study.tell(leader, value + 0.005)
    slow = study.ask()
    assert report(slow, [0.90, 0.91]) == 2
    assert study.pruner.last_reason == ("val_accuracy 0.9100 at epoch 2 ranks low among the "
                                        "trials that reached that epoch")


def leaders_study(leaders: int, direction: str = "maximize") -> optuna.Study:
    """The leaders guard alone: no floor, no baseline, no peer-ranking pruner."""
    return optuna.create_study(direction=direction, pruner=GuardedPruner(
        optuna.pruners.NopPruner(), leaders=leaders, metric="val_accuracy"))


def finish(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    assert report(trial, curve) is None
    study.tell(trial, curve[-1])


def test_a_trial_outside_the_leaders_at_an_epoch_stops_there() -> None:
    study = leaders_study(2)
    finish(study, [0.96, 0.97, 0.98])
    finish(study, [0.95, 0.975, 0.985])
    # Second best at epoch 1, best at epoch 2, third at epoch 3: it stops at epoch 3.
    trial = study.ask()
    assert report(trial, [0.955, 0.976, 0.979]) == 3
    assert study.pruner.last_reason == ("val_accuracy 0.9790 at epoch 3 is not among the best "
                                        "2 at that epoch (the last of them: 0.9800)")


def test_the_leaders_guard_waits_for_enough_peers_and_counts_pruned_ones() -> None:
    study = leaders_study(2)
    finish(study, [0.99, 0.99])
    # One peer only: a far worse trial is not ranked, and ends pruned at epoch 1 by hand.
    slow = study.ask()
    assert report(slow, [0.5]) is None
    study.tell(slow, state=optuna.trial.TrialState.PRUNED)
    # Two peers at epoch 1 now, the pruned one among them; none yet at epoch 2.
    trial = study.ask()
    assert report(trial, [0.6, 0.1]) is None
    late = study.ask()
    assert report(late, [0.55]) == 1


def test_a_running_trial_counts_among_the_leaders() -> None:
    study = leaders_study(1)
    running = study.ask()
    running.report(0.98, 1)
    assert report(study.ask(), [0.97]) == 1


def test_the_baseline_is_never_pruned_by_the_leaders() -> None:
    study = leaders_study(1)
    finish(study, [0.99, 0.99])
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    baseline = study.ask()
    assert report(baseline, [0.95, 0.96]) is None  # behind the leader at both epochs
    assert report(study.ask(), [0.95, 0.96]) == 1  # the same curve, not the baseline: stops


def test_minimize_ranks_the_lowest_values_first() -> None:
    study = leaders_study(1, direction="minimize")
    finish(study, [0.5, 0.4])
    assert report(study.ask(), [0.45, 0.38]) is None
    assert report(study.ask(), [0.6]) == 1


def test_the_leaders_guard_starts_at_its_epoch() -> None:
    study = optuna.create_study(direction="maximize", pruner=GuardedPruner(
        optuna.pruners.NopPruner(), leaders=1, leaders_from=3, metric="val_accuracy"))
    finish(study, [0.97, 0.98, 0.99])
    # Far behind at epochs 1 and 2, which are not ranked; behind at epoch 3, which is.
    assert report(study.ask(), [0.6, 0.7, 0.98]) == 3


def test_a_count_of_leaders_keeps_the_best_five_from_epoch_three() -> None:
    study = new_study("asha")
    assert (study.pruner.leaders, study.pruner.leaders_from) == (STUDY.leaders,
                                                                 STUDY.leaders_from) == (5, 3)
    for value in (0.970, 0.971, 0.972, 0.973, 0.974):
        finish(study, [0.97, 0.975, value])
    assert report(study.ask(), [0.97, 0.975, 0.9705]) is None  # fifth best now
    assert report(study.ask(), [0.97, 0.975, 0.9702]) == 3
    assert "is not among the best 5 at that epoch (the last of them: 0.9705)" \
        in study.pruner.last_reason


@pytest.mark.parametrize("leaders", [0, 1.0, 1.5, -0.2, True])
def test_leaders_that_are_neither_a_count_nor_a_share_are_refused(leaders: object) -> None:
    with pytest.raises(ValueError, match="leaders must be a count of at least 1 or a share"):
        GuardedPruner(optuna.pruners.NopPruner(), leaders=leaders)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaders of study 'guarded' must be a count of at "
                                         "least 1 or a share between 0 and 1"):
        replace(STUDY, leaders=leaders)


@pytest.mark.parametrize("leaders_from", [0, 1.0, 2.5, -1])
def test_leaders_from_that_is_neither_an_epoch_nor_a_fraction_is_refused(
        leaders_from: object) -> None:
    with pytest.raises(ValueError, match="leaders_from of study 'guarded' must be an epoch "
                                         "of at least 1 or a fraction of the epochs"):
        replace(STUDY, leaders_from=leaders_from)


# -- the defaults a new StudyDefinition gets ---------------------------------------------------

def plain_definition(**fields):
    """A user's study with no pruning or sampler field set."""
    from hpo.definition import Dataset, StudyDefinition

    def unused(*args):
        raise AssertionError

    return StudyDefinition(name="mine", summary="", objective=unused, search_space={},
                           build_model=unused, dataset=Dataset("d", unused, unused), **fields)


def default_study(epochs: int, direction: str = "maximize", **fields) -> optuna.Study:
    definition = plain_definition(direction=direction, epochs=epochs, **fields)
    return optuna.create_study(direction=direction,
                               pruner=make_pruner(definition.pruner, definition, epochs=epochs))


def test_a_new_definition_ranks_from_a_tenth_of_its_epochs_against_a_third() -> None:
    definition = plain_definition()
    assert (definition.sampler, definition.pruner) == ("tpe", "leaders")
    assert (definition.leaders, definition.leaders_from, definition.floor,
            definition.baseline_margin) == (1 / 3, 0.1, "learned", None)
    for epochs, first in ((10, 1), (52, 6), (200, 20)):
        pruner = default_study(epochs).pruner
        assert isinstance(pruner, GuardedPruner) and pruner.inner is None
        assert pruner.leaders_from == first


def test_with_one_peer_a_trial_behind_it_stops_and_a_tie_does_not() -> None:
    study = default_study(10)
    finish(study, [0.80, 0.85])
    tie = study.ask()
    assert report(tie, [0.80, 0.85]) is None  # level with the best: never pruned
    study.tell(tie, 0.85)
    behind = study.ask()
    assert report(behind, [0.79]) == 1
    assert study.pruner.last_reason == ("val_accuracy 0.7900 at epoch 1 is not among the best "
                                        "third of the trials at that epoch (the last of them: "
                                        "0.8000)")


def test_a_third_of_many_peers_train_on() -> None:
    study = default_study(10)
    for value in (0.1, 0.2, 0.3, 0.4, 0.5):
        finish_or_prune(study, [value])
    # Five others: of the six, the best ceil(6 / 3) = 2 train on. 0.35 would be third.
    assert report(study.ask(), [0.35]) == 1
    assert study.pruner.last_reason.endswith("(the last of them: 0.4000)")
    study = default_study(10)
    for value in (0.1, 0.2, 0.3, 0.4, 0.5):
        finish_or_prune(study, [value])
    assert report(study.ask(), [0.45]) is None  # second of six


def finish_or_prune(study: optuna.Study, curve: list[float]) -> None:
    trial = study.ask()
    state = optuna.trial.TrialState.PRUNED if report(trial, curve) else None
    study.tell(trial, curve[-1] if state is None else None, state=state)


def test_crossing_curves_a_slow_starter_is_not_ranked_before_a_tenth_of_the_epochs() -> None:
    """52 epochs: ranking starts at epoch 6. A slow starter far behind at epochs 1-5 that
    overtakes the leader by epoch 6 trains on, and ends the best."""
    study = default_study(52)
    fast = [0.70 + 0.002 * e for e in range(52)]
    finish(study, fast)
    slow = [0.30 + 0.1 * e for e in range(6)] + [0.80 + 0.002 * e for e in range(46)]
    trial = study.ask()
    assert report(trial, slow) is None
    study.tell(trial, slow[-1])
    assert study.best_value == slow[-1]
    # The same slow start, if it never catches up, stops at epoch 6.
    assert report(study.ask(), [0.30 + 0.05 * e for e in range(52)]) == 6


def test_minimize_keeps_the_lowest_third() -> None:
    study = default_study(10, direction="minimize")
    finish(study, [0.50, 0.40])
    finish_or_prune(study, [0.55])
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED  # above the one peer
    # Of three at epoch 1, ceil(3 / 3) = 1 trains on: 0.52 is second, 0.45 the lowest.
    finish_or_prune(study, [0.52])
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED
    assert report(study.ask(), [0.45, 0.39]) is None


def learned_floor_study(direction: str = "maximize") -> optuna.Study:
    """The learned floor alone."""
    return optuna.create_study(direction=direction, pruner=GuardedPruner(
        None, epochs=10, floor="learned", metric="val_accuracy"))


def test_the_learned_floor_is_where_the_worst_quarter_stood_after_one_epoch() -> None:
    study = learned_floor_study()
    for first in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.96, 0.97):
        finish_or_prune(study, [first, first + 0.01])
    # Eight others: two of them (a quarter) started below 0.7, the floor. Epoch 1 is never
    # held against it: a trial at chance after one epoch may still learn.
    assert report(study.ask(), [0.1, 0.69]) == 2
    assert study.pruner.last_reason == ("val_accuracy 0.6900 at epoch 2 is below 0.7000, "
                                        "where the worst quarter of the study's trials stood "
                                        "after one epoch")


def test_the_learned_floor_waits_for_three_other_trials_and_turns_for_minimize() -> None:
    study = learned_floor_study("minimize")
    for first in (2.0, 1.0):
        finish_or_prune(study, [first, first])
    finish(study, [9.0, 9.0])  # two others only: nothing to learn from yet
    # Others' first epochs now 9.0, 2.0 and 1.0, worst first: the ceiling is the worst, 9.0.
    assert report(study.ask(), [1.0, 9.5]) == 2
    assert "is above 9.0000, where the worst quarter" in study.pruner.last_reason
    study = learned_floor_study("minimize")
    for first in (4.0, 3.0, 2.0, 1.0):
        finish_or_prune(study, [first, first])
    # Four others, worst first 4, 3, 2, 1: the ceiling is 3.0.
    assert report(study.ask(), [1.0, 3.1]) == 2
    assert report(study.ask(), [5.0, 2.9]) is None


def test_a_pruner_that_needs_leaders_refuses_none() -> None:
    with pytest.raises(ValueError, match="The pruner 'leaders' of study 'mine' needs leaders"):
        plain_definition(leaders=None)
    assert plain_definition(leaders=None, pruner="asha").leaders is None


@pytest.mark.parametrize("pruner_name", ["hyperband", "asha", "median", "leaders"])
def test_the_baseline_is_never_pruned_by_any_rule(pruner_name: str) -> None:
    """The baseline's exemption lives in the pruner, the one place that decides: below the
    floor, behind the leaders, ranked low by Optuna's pruner, it still runs to the end."""
    study = new_study(pruner_name)
    finish(study, [0.99] * EPOCHS)
    finish(study, [0.99] * EPOCHS)
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: True})
    assert report(study.ask(), [0.11] * EPOCHS) is None
    assert report(study.ask(), [0.11] * EPOCHS) == 1  # the same curve, not the baseline


@pytest.mark.parametrize("pruner_name", ["leaders", "asha", "hyperband", "median"])
@pytest.mark.parametrize("definition", [MNIST, STUDY], ids=["default-rules", "set-rules"])
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize("behind", [0.0, 0.1], ids=["all-level", "others-behind"])
def test_a_tie_with_the_best_is_never_pruned(pruner_name: str, definition, direction: str,
                                              behind: float) -> None:
    """A trial level with the best trial at every epoch is never stopped, by any rule or any
    pruner behind them, whether the other trials are level too or behind (issue 18, Part 4:
    a new user's trial was pruned at a tie with the best)."""
    sign = 1 if direction == "maximize" else -1
    best = [0.6 + 0.02 * epoch for epoch in range(1, EPOCHS + 1)]
    study = new_study(pruner_name, direction, definition)
    if definition.baseline_margin is not None:
        add_baseline(study, [sign * v for v in best])
    for rank in range(6):
        curve = [sign * (v - rank * behind) for v in best]
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
        study.tell(trial, curve[-1])
    tie = study.ask()
    assert report(tie, [sign * v for v in best]) is None, study.pruner.last_reason


def test_a_value_level_with_the_floor_or_the_baseline_s_limit_is_not_pruned() -> None:
    """Each rule stops a trial strictly behind its line: level with it is a tie."""
    study = new_study("asha")  # STUDY: the floor at 0.5, 0.01 behind the baseline
    at_floor = study.ask()
    assert report(at_floor, [0.5]) is None, study.pruner.last_reason
    add_baseline(study, [0.8] * EPOCHS)
    at_limit = study.ask()
    assert report(at_limit, [0.8 - 0.01]) is None, study.pruner.last_reason
