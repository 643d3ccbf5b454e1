"""Curves, thresholds, calibration and bootstrap intervals against hand-computed and scikit-learn values."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from helmetlib.evaluation.metrics import performance
from helmetlib.evaluation.uncertainty import (
    bare_head_recall,
    bootstrap_intervals,
    brier_score,
    choose_threshold,
    curves,
    reliability,
)

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.3, 0.6])


def test_curves_match_scikit_learn_and_hand_counts():
    result = curves(Y, P)
    assert result.roc_auc == pytest.approx(roc_auc_score(Y, P))
    # pairs (helmet, bare) ranked correctly: 0.7 beats 3, 0.9 beats 4, 0.3 beats 1, 0.6 beats 3 -> 11 of 16
    assert result.roc_auc == pytest.approx(11 / 16)
    assert result.fpr[0] == 0 and result.tpr[-1] == 1
    assert 0 < result.average_precision <= 1


def test_bare_head_recall_and_threshold_choice():
    assert bare_head_recall(Y, P, 0.5) == pytest.approx(3 / 4)  # 0.8 is the missed bare head
    assert bare_head_recall(Y, P, 0.85) == pytest.approx(1.0)
    threshold = choose_threshold(Y, P, target_bare_head_recall=1.0)
    # the lowest operating point that calls 0.8 a bare head is 0.9; returned half-way down to 0.8
    assert threshold == pytest.approx(0.85)
    # 3 of 4 bare heads (0.1, 0.35, 0.4) are below any threshold in (0.4, 0.6]: half-way, 0.5
    assert choose_threshold(Y, P, target_bare_head_recall=0.75) == pytest.approx(0.5)
    assert bare_head_recall(Y, P, threshold) == 1.0
    best = choose_threshold(Y, P)
    assert best == pytest.approx(0.5)  # F1 is highest (0.75) from the operating point 0.6: half-way down to 0.4
    assert performance(Y, P, threshold=best).f1 == pytest.approx(0.75)
    assert np.abs(P - best).min() == pytest.approx(0.1)  # no validation image sits on the threshold


def test_calibration_by_hand():
    assert brier_score(Y, P) == pytest.approx(brier_score_loss(Y, P))
    perfect = reliability(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0]), bins=2)
    assert perfect["ece"] == 0 and perfect["counts"] == [2, 2]
    # bin [0.5, 1): mean prediction 0.75, observed 0.5 -> gap 0.25 over all 4 images
    off = reliability(np.array([0, 1, 0, 1]), np.array([0.6, 0.9, 0.6, 0.9]), bins=2)
    assert off["counts"] == [0, 4] and off["ece"] == pytest.approx(0.25)
    assert off["predicted"] == pytest.approx([0.75]) and off["observed"] == pytest.approx([0.5])


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def sample(n):
        y = np.tile([0, 1], n // 2)
        probabilities = np.clip(y * 0.4 + 0.3 + rng.normal(0, 0.2, n), 0, 1)
        return y, probabilities

    small = bootstrap_intervals(*sample(40), n_resamples=500)
    large = bootstrap_intervals(*sample(400), n_resamples=500)
    for name in ("accuracy", "f1", "bare_head_recall"):
        assert small[name].low <= small[name].value <= small[name].high
        assert large[name].high - large[name].low < small[name].high - small[name].low


def test_bootstrap_difference_between_two_models():
    y = np.tile([0, 1], 50)
    good = np.where(y == 1, 0.8, 0.2)
    coin = np.full(100, 0.6)  # calls everything a helmet: accuracy 0.5
    intervals = bootstrap_intervals(y, good, reference_probabilities=coin, n_resamples=300)
    difference = intervals["accuracy_difference"]
    assert difference.value == pytest.approx(0.5)
    assert 0.3 < difference.low <= difference.value <= difference.high < 0.7


def test_bootstrap_point_estimates_equal_the_performance_table():
    intervals = bootstrap_intervals(Y, P, n_resamples=100)
    table = performance(Y, P)
    for name in ("accuracy", "recall", "precision", "f1"):
        assert intervals[name].value == pytest.approx(getattr(table, name))
    assert intervals["bare_head_recall"].value == pytest.approx(3 / 4)


def test_bootstrap_interval_of_a_known_proportion_matches_theory():
    """100 images, 80 right: the percentile interval of accuracy is about 0.80 +- 1.96 * 0.04."""
    y = np.tile([0, 1], 50)
    probabilities = np.where(y == 1, 0.9, 0.1)
    probabilities[:20] = 1 - probabilities[:20]  # 20 mistakes
    interval = bootstrap_intervals(y, probabilities, n_resamples=4000)["accuracy"]
    assert interval.value == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.8 - 1.96 * 0.04, abs=0.015)
    assert interval.high == pytest.approx(0.8 + 1.96 * 0.04, abs=0.015)
