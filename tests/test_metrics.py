"""Metrics against values worked out by hand, and the plot helpers."""

import numpy as np
import pytest

from helmetlib import confusion, performance, performance_table
from helmetlib.evaluation.metrics import is_collapsed, per_class_table, predict_labels
from helmetlib.reports import plots

# 6 bare heads (0), 4 helmets (1). Predictions at 0.5: [0,0,0,0,1,1 | 1,1,1,0]
Y_TRUE = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
PROBS = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9, 0.8, 0.5, 0.2])


def test_threshold_is_inclusive():
    assert predict_labels(PROBS).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    assert predict_labels(PROBS, threshold=0.75).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]


def test_confusion_by_hand():
    assert confusion(Y_TRUE, PROBS).tolist() == [[4, 2], [1, 3]]


def test_performance_by_hand():
    result = performance(Y_TRUE, PROBS)
    # class 0: recall 4/6, precision 4/5; class 1: recall 3/4, precision 3/5
    assert result.accuracy == pytest.approx(0.7)
    assert result.recall == pytest.approx(0.6 * 4 / 6 + 0.4 * 3 / 4)
    assert result.precision == pytest.approx(0.6 * 0.8 + 0.4 * 0.6)
    f1_0, f1_1 = 2 * 0.8 * (4 / 6) / (0.8 + 4 / 6), 2 * 0.6 * 0.75 / (0.6 + 0.75)
    assert result.f1 == pytest.approx(0.6 * f1_0 + 0.4 * f1_1)
    bare = result.per_class["no helmet"]
    assert (bare.recall, bare.precision, bare.f1, bare.support) == pytest.approx((4 / 6, 0.8, f1_0, 6))
    assert result.bare_head_recall == pytest.approx(4 / 6) and result.per_class["helmet"].recall == pytest.approx(0.75)
    assert result.n == 10 and result.threshold == 0.5
    assert type(result).from_json(result.to_json()) == result


def test_collapse_means_one_class_or_no_spread():
    y = np.array([0, 1] * 10)
    assert is_collapsed(y, np.full(20, 0.6))  # one class
    assert is_collapsed(y, np.linspace(0.4995, 0.5005, 20))  # barely varies
    assert not is_collapsed(y, np.where(y == 1, 0.8, 0.2))
    y40 = np.array([0, 1] * 20)
    nearly = np.full(40, 0.8)
    nearly[0] = 0.1  # one bare head predicted of 20: fewer than a tenth of the smaller class (2)
    assert is_collapsed(y40, nearly)
    nearly[2] = 0.1  # two predicted: no longer "nearly one class"
    assert not is_collapsed(y40, nearly)


def test_tables():
    table = performance_table({"a": performance(Y_TRUE, PROBS), "b": performance(Y_TRUE, 1 - PROBS)})
    assert list(table.columns) == ["accuracy", "recall", "precision", "f1", "bare-head recall"]
    assert table.loc["a", "accuracy"] == pytest.approx(0.7) and table.loc["b", "accuracy"] == pytest.approx(
        0.4
    )  # 0.5 stays a helmet
    assert per_class_table(performance(Y_TRUE, PROBS)).loc["no helmet", "support"] == 6


def test_plots_draw_the_numbers(demo_small):
    fig = plots.confusion_heatmap(confusion(Y_TRUE, PROBS), title="validation")
    assert sorted(text.get_text() for text in fig.axes[0].texts) == ["1", "2", "3", "4"]
    fig = plots.class_balance(demo_small.labels)
    assert [patch.get_height() for patch in fig.axes[0].patches] == [24, 24]
    fig = plots.training_curves(
        {"seed 1": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}}
    )
    assert len(fig.axes[0].lines) == 2 and list(fig.axes[0].lines[1].get_ydata()) == [1.1, 0.7]
    fig = plots.sample_grid(demo_small.images, demo_small.labels, per_class=3)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    probabilities = np.linspace(0, 1, len(demo_small))
    fig = plots.prediction_grid(demo_small.images, demo_small.labels, probabilities, n=6)
    assert all(ax.get_title().startswith("true ") for ax in fig.axes if ax.images)
