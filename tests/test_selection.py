"""Selection among deployed models, the runner-up verdict, the threshold to deploy and the warnings, on hand-made
results."""

from dataclasses import replace

import numpy as np
import pytest

from helmetlib.core.weights import WeightsChoice
from helmetlib.evaluation.calibration import fit_calibration
from helmetlib.evaluation.metrics import performance
from helmetlib.evaluation.results import DataInfo, ModelResult, RepeatResult, TrainingDetails
from helmetlib.evaluation.selection import (
    SELECTION_RULE,
    excluded_models,
    runner_up,
    select_model,
    threshold_by_rule,
    verdict,
)
from helmetlib.evaluation.uncertainty import brier_score
from helmetlib.reports.narrative import run_warnings
from helmetlib.run.config import RunConfig

LABELS = np.array([0, 1] * 10)


def scores_with_f1(target: float):
    """Scores of a prediction whose weighted F1 is as close to `target` as 20 images allow (from real labels)."""
    best = None
    for wrong in range(11):
        probabilities = np.where(LABELS == 1, 0.9, 0.1)
        probabilities[: 2 * wrong : 2] = 0.9  # `wrong` bare heads called helmets
        scores = performance(LABELS, probabilities)
        if best is None or abs(scores.f1 - target) < abs(best.f1 - target):
            best = scores
    return best


def result(name, validation_f1s, *, train_f1=1.0, parameters=10, collapsed=None, brier=0.25):
    """A model's result record whose deployed model is its first repeat, with validation Brier score `brier`."""
    collapsed = collapsed or [False] * len(validation_f1s)
    repeats = tuple(
        RepeatResult(
            seed=812 + i,
            seed_used=812 + i,
            split_seed=42,
            train=scores_with_f1(train_f1),
            validation=scores_with_f1(f1),
            epochs_run=20,
            collapsed=c,
        )
        for i, (f1, c) in enumerate(zip(validation_f1s, collapsed, strict=True))
    )
    return ModelResult(
        name=name,
        description="",
        parameters=parameters,
        trainable_parameters=parameters,
        normalization="unit",
        input_shape=(200, 200, 3),
        mode="fast",
        precision="float32",
        view_precision=None,
        weights=None,
        threshold=0.5,
        repeats=repeats,
        deployed="repeat",
        deployed_seeds=(812,),
        train=repeats[0].train,
        validation=repeats[0].validation,
        best_repeat_validation=None,
        ensemble_validation=None,
        details=TrainingDetails(family="cnn", faithful=False),
        data=DataInfo(path="x", demo=False, content_hash="h", images=20, class_counts={"0": 10, "1": 10}),
        split={"train": 14, "validation": 3, "test": 3},
        train_seconds=1.0,
        validation_brier=brier,
    )


def deployed(name, y, probabilities, **options):
    """A result whose deployed model gave `probabilities` (n,) on the validation labels `y` (n,)."""
    base = result(name, [0.5], brier=brier_score(y, probabilities), **options)
    return replace(base, validation=performance(y, probabilities))


Y = np.array([0, 1] * 50)


def test_a_clearly_better_f1_wins_over_a_better_brier_score():
    sharp = np.where(Y == 1, 0.99, 0.01)
    sharp[:8] = 1 - sharp[:8]  # 8 confident mistakes: F1 0.92, Brier 0.08
    timid = np.where(Y == 1, 0.55, 0.45)
    timid[:40] = 1 - timid[:40]  # 40 mistakes, never far from 0.5: F1 0.6, Brier 0.24
    results = {"sharp": deployed("sharp", Y, sharp), "timid": deployed("timid", Y, timid)}
    results["timid"] = replace(results["timid"], validation_brier=0.01)  # a better Brier cannot beat a clear F1 gap
    assert select_model(results, Y, {"sharp": sharp, "timid": timid}, n_resamples=300) == "sharp"


def test_models_validation_cannot_tell_apart_are_decided_by_the_brier_score():
    confident = np.where(Y == 1, 1.0, 0.0)
    confident[:8] = 1 - confident[:8]  # 8 mistakes at full confidence: F1 0.92, Brier 0.08
    calibrated = np.where(Y == 1, 0.99, 0.01)
    calibrated[:10] = np.where(Y[:10] == 1, 0.4, 0.6)  # 10 mistakes, each unsure: F1 0.90, Brier 0.037
    probabilities = {"confident": confident, "calibrated": calibrated}
    results = {name: deployed(name, Y, p) for name, p in probabilities.items()}
    assert results["confident"].validation.f1 > results["calibrated"].validation.f1 + 0.01
    assert results["calibrated"].validation_brier < results["confident"].validation_brier
    assert select_model(results, Y, probabilities, n_resamples=300) == "calibrated"
    assert runner_up(results, "calibrated", Y, probabilities, n_resamples=300) == "confident"
    # without paired probabilities (repeats on other splits) only F1 ties within 0.001 compete: F1 decides
    assert select_model(results) == "confident"
    assert "Brier score" in SELECTION_RULE and "paired bootstrap" in SELECTION_RULE


def test_a_collapsed_model_is_never_selected_even_when_it_scores_best():
    results = {"dead": result("dead", [1.0, 1.0], collapsed=[True, True]), "ok": result("ok", [0.6, 0.6])}
    assert select_model(results) == "ok"
    assert "collapsed in all 2 repeats" in excluded_models(results)["dead"]
    half = {"half": result("half", [0.9, 0.333], collapsed=[False, True]), "ok": result("ok", [0.6, 0.6])}
    assert select_model(half) == "half" and not half["half"].collapsed  # one good repeat keeps it eligible
    assert select_model({"dead": results["dead"]}) is None


def test_f1_ties_go_to_the_lower_brier_score_then_to_fewer_parameters():
    results = {
        "overconfident": result("overconfident", [0.9], parameters=1, brier=0.2),
        "big": result("big", [0.9], parameters=1000, brier=0.1),
        "small": result("small", [0.9], parameters=10, brier=0.1),
    }
    assert select_model(results) == "small"
    assert runner_up(results, "small") == "big"


def test_verdict_separates_only_when_the_interval_excludes_zero():
    y = np.array([0, 1] * 50)
    good, coin = np.where(y == 1, 0.9, 0.1), np.full(100, 0.6)
    results = {"good": result("good", [0.9]), "coin": result("coin", [0.3])}
    separated = verdict("good", "coin", y, {"good": good, "coin": coin}, results, threshold=0.5, n_resamples=300)
    assert separated.separated and "is better than coin" in separated.text
    assert separated.difference["f1"].low > 0
    twin = good.copy()
    twin[:2] = 1 - twin[:2]  # two images differ
    close = verdict(
        "good",
        "twin",
        y,
        {"good": good, "twin": twin},
        {**results, "twin": result("twin", [0.88])},
        threshold=0.5,
        n_resamples=300,
    )
    assert not close.separated and "cannot be told apart from twin" in close.text


def config(**changes):
    base = RunConfig(
        run_id="x", weights=WeightsChoice(requested="none", used="random"), cache_dir="/c", data_dir="/data"
    )
    return replace(base, **changes)


def test_threshold_rules():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.3, 0.6])
    fixed = threshold_by_rule(y, p, rule="fixed", threshold=0.5, target_bare_head_recall=0.95)
    assert (fixed.value, fixed.rule) == (0.5, "fixed")
    strict = threshold_by_rule(y, p, rule="bare_head_recall", threshold=0.5, target_bare_head_recall=0.99)
    assert strict.value == pytest.approx(0.85)  # calls the bare head at 0.8 a bare head, half-way to 0.9
    p[1] = 0.55  # a bare head above 0.5: the study's 0.5 gives F1 0.619, thresholds in (0.55, 0.6] give 0.75
    best = threshold_by_rule(y, p, rule="max_f1", threshold=0.5, target_bare_head_recall=0.95)
    assert best.value == pytest.approx(0.575) and "highest weighted F1" in best.description  # half-way
    assert performance(y, p, threshold=best.value).f1 == pytest.approx(0.75)
    assert performance(y, p, threshold=0.5).f1 == pytest.approx(0.619, abs=1e-3)


def test_the_fixed_threshold_keeps_the_studys_decisions_on_the_calibrated_scale():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.2, 200), 0.01, 0.99)  # shifted: 0.5 is not the midpoint
    calibration = fit_calibration(y, p)
    fixed = threshold_by_rule(
        y, calibration.apply(p), calibration, rule="fixed", threshold=0.5, target_bare_head_recall=0.95
    )
    assert fixed.value != pytest.approx(0.5, abs=0.01) and "0.5 on the model's output" in fixed.description
    np.testing.assert_array_equal(calibration.apply(p) >= fixed.value, p >= 0.5)
    calibrated = threshold_by_rule(
        y, calibration.apply(p), calibration, rule=config().threshold_rule, threshold=0.5, target_bare_head_recall=0.95
    )  # fast mode's default
    assert (calibrated.value, calibrated.rule) == (
        0.5,
        "calibrated",
    ) and "on calibrated P(helmet)" in calibrated.description


def test_the_threshold_rule_defaults_to_the_fast_modes_and_to_the_studys_with_faithful():
    from helmetlib.core.specs import FAST_THRESHOLD_RULE
    from helmetlib.run.config import RunConfig

    fast = RunConfig.from_parameters(run_id="a", origin="notebook", WEIGHTS="none", MODELS="cnn")
    faithful = RunConfig.from_parameters(run_id="a", origin="notebook", WEIGHTS="none", MODELS="cnn", FAITHFUL=True)
    chosen = RunConfig.from_parameters(
        run_id="a", origin="notebook", WEIGHTS="none", FAITHFUL=True, THRESHOLD_RULE="max-f1"
    )
    assert (fast.threshold_rule, faithful.threshold_rule, chosen.threshold_rule) == (
        FAST_THRESHOLD_RULE,
        "fixed",
        "max_f1",
    )


def test_warnings_name_collapsed_models_random_weights_and_demo_data():
    results = {"dead": result("dead", [0.3], collapsed=[True]), "ok": result("ok", [0.8])}
    results["ok"] = replace(results["ok"], weights=WeightsChoice(requested="none", used="random"))
    warnings = run_warnings(config(data_dir=""), results, None, None)
    texts = [text for _, text in warnings]
    assert any("dead collapsed in every repeat" in text for text in texts)
    assert any("RANDOMLY INITIALISED" in text for text in texts)
    assert any(text.startswith("Synthetic demo data") for text in texts)
    assert [level for level, _ in warnings][0] == "danger"


def test_results_without_a_brier_score_are_refused_not_guessed():
    results = {"old": result("old", [0.9], brier=None), "new": result("new", [0.8])}
    with pytest.raises(ValueError, match="no validation Brier score in the results of old: retrain them"):
        select_model(results)
