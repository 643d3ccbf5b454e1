"""The cross-architecture ensemble: the rule on planted validation probabilities, and, when it is deployed, one
self-contained file (each member's normalisation and calibration inside) that helmet-predict (Keras and TFLite)
answers like the mean of the calibrated members."""

import dataclasses

import numpy as np
import pytest

from helmetlib import predict
from helmetlib.core.weights import WeightsChoice
from helmetlib.deploy.cards import read_card
from helmetlib.evaluation.calibration import fit_calibration
from helmetlib.evaluation.ensembles import ENSEMBLE_NAME, brier_gain, cross_architecture
from helmetlib.reports.notebook import NotebookRun
from helmetlib.reports.pipeline import compare_and_select, train_and_save
from helmetlib.run.config import RunConfig
from helmetlib.run.folder import RunFolder

TOLERANCE = 1e-4


def complementary(n: int = 200, seed: int = 0):
    """Labels and two models that are each sure and right on half the images and unsure (0.5) on the other half,
    the halves crossed: together they are sure and right everywhere."""
    rng = np.random.default_rng(seed)
    labels = np.tile([0, 1], n // 2)
    sure = np.where(labels == 1, 0.9, 0.1) + rng.normal(0, 0.02, n)
    first_half = rng.permutation(n) < n // 2
    return labels, np.where(first_half, sure, 0.5), np.where(first_half, 0.5, sure)


def test_the_ensemble_is_deployed_when_validation_shows_it_clearly_better():
    labels, first, second = complementary()
    cross = cross_architecture(["a", "b"], labels, {"a": first, "b": second, "c": second})
    assert cross.members == ("a", "b") and cross.deployed
    assert cross.brier < cross.selected_brier - 0.02 and cross.brier_gain.low > 0
    assert "is deployed: it is deployed only when validation shows its probabilities clearly better" in cross.text


def test_the_ensemble_is_not_deployed_when_validation_cannot_tell():
    labels, first, _ = complementary()
    noise = np.random.default_rng(1).uniform(0, 1, len(labels))  # a member that knows nothing
    cross = cross_architecture(["a", "b"], labels, {"a": first, "b": noise})
    assert not cross.deployed and cross.brier_gain.low <= 0
    assert cross.text.startswith("The cross-architecture ensemble (a + b, mean calibrated P(helmet)) is not deployed")
    assert cross_architecture(["a"], labels, {"a": first}) is None  # nothing to average


def test_the_rule_option_decides_on_the_same_evidence():
    labels, first, second = complementary()
    alike = np.clip(first + np.random.default_rng(2).normal(0, 0.01, len(labels)), 0, 1)  # cannot be told apart
    noise = np.random.default_rng(1).uniform(0, 1, len(labels))  # averaging with it is clearly worse
    outcomes = {}
    for rule in ("preferred", "unless-worse", "off"):
        outcomes[rule] = [
            cross_architecture(["a", "b"], labels, {"a": first, "b": other}, rule=rule).deployed
            for other in (second, alike, noise)
        ]
    assert outcomes == {
        "preferred": [True, False, False],
        "unless-worse": [True, True, False],
        "off": [False, False, False],
    }
    text = cross_architecture(["a", "b"], labels, {"a": first, "b": noise}, rule="unless-worse").text
    assert "is not deployed: it is deployed unless validation shows its probabilities clearly worse" in text


def test_brier_gain_is_the_difference_of_the_brier_scores_with_a_paired_interval():
    labels, first, second = complementary(seed=3)
    gain = brier_gain(labels, first, second)
    assert gain.value == pytest.approx(np.mean((first - labels) ** 2) - np.mean((second - labels) ** 2))
    assert gain.low < gain.value < gain.high
    assert brier_gain(labels, first, first).high == 0  # the same model: no gain on any resample


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """A run folder, made in process, of the CNN and vgg16_multiscale (random backbone) on 64 px demo images, whose
    comparison is told that validation prefers their ensemble (the rule is tested above): what is deployed then."""
    root = tmp_path_factory.mktemp("ensemble-run")
    config = RunConfig(
        run_id="ensemble",
        weights=WeightsChoice(requested="none", used="random"),
        cache_dir=str(root),
        models=("cnn", "vgg16_multiscale"),
        epochs=12,
        batch_size=16,
        image_size=64,
        bootstrap_resamples=200,
    )
    run = NotebookRun(config=config, folder=RunFolder(root / "run"))
    dataset = run.dataset()
    for name in config.models:
        train_and_save(run, name, dataset)
    with pytest.MonkeyPatch.context() as patch:

        def preferred(*args, **kwargs):
            return dataclasses.replace(cross_architecture(*args, **kwargs), deployed=True)

        patch.setattr("helmetlib.reports.pipeline.cross_architecture", preferred)
        comparison = compare_and_select(run, dataset)
    return run, dataset, comparison


def test_a_deployed_ensemble_is_one_file_that_answers_the_mean_calibrated_probability(ensemble_run):
    run, dataset, comparison = ensemble_run
    selection = comparison.selection
    assert selection.deployed == ENSEMBLE_NAME and set(selection.cross_ensemble.members) == {"cnn", "vgg16_multiscale"}
    labels = comparison.validation_labels
    calibrated = []
    for name in selection.cross_ensemble.members:
        calibration = fit_calibration(labels, comparison.validation[name])
        calibrated.append(calibration.apply(comparison.validation[name]))
    expected = np.mean(calibrated, axis=0)
    assert np.ptp(expected) > 100 * TOLERANCE  # the members discriminate: agreement is not vacuous
    card = read_card(run.folder.model_file(ENSEMBLE_NAME))
    assert card.selected and card.calibration is None and card.input.normalization == "pixels" and card.backbone is None
    assert set(card.files) == {"keras", "tflite", "quant_tflite", "crop_check"}
    assert card.crop_check.features.startswith("the first member's own features")
    images = dataset.images[comparison.validation_indices]
    from_run = predict(run.folder.path, images, check_crops=False)["probability"].to_numpy()  # the deployed file
    np.testing.assert_allclose(from_run, expected, atol=TOLERANCE)
    exported = predict(run.folder.tflite_file(ENSEMBLE_NAME), images)["probability"].to_numpy()
    np.testing.assert_allclose(exported, expected, atol=TOLERANCE)
    # the one look at test is the ensemble's, at the study's threshold on its mean calibrated probability
    test = predict(run.folder.model_file(ENSEMBLE_NAME), dataset.images[run.split(dataset).test])
    np.testing.assert_allclose(selection.test_probabilities, test["probability"], atol=TOLERANCE)
    assert selection.threshold.value == 0.5 and selection.calibration is None
    assert selection.test.accuracy == pytest.approx(
        np.mean((test["probability"] >= 0.5) == np.array(selection.test_labels))
    )
