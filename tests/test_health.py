"""A deployable model: health records that catch a half-dead CNN, the seed ensemble deployed unless clearly worse,
and calibration that lowers the error of a miscalibrated model."""

from dataclasses import replace

import numpy as np
import pytest

from helmetlib import performance, split, train_repeats
from helmetlib.core.backend import keras
from helmetlib.core.preprocess import normalize
from helmetlib.evaluation.calibration import fit_calibration
from helmetlib.evaluation.health import layer_health, output_health
from helmetlib.models.builders import healthy_start, simple_cnn
from helmetlib.reports.narrative import run_warnings
from helmetlib.training.batches import relu_activations
from helmetlib.training.seed_ensemble import choose_seed_ensemble


def half_dead_copy(model, images, labels):
    """A copy of `model` whose bottleneck never fires for bare heads (label 0) among `images`: every unit's bias is
    lowered below its largest pre-activation on them, so each bare head gets sigmoid(prediction bias)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    bottleneck = copy.get_layer("bottleneck")
    kernel, bias = bottleneck.get_weights()
    inputs = keras.Model(copy.inputs, bottleneck.input).predict(images, verbose=0)
    bias = bias - (inputs[labels == 0] @ kernel + bias).max(axis=0) - 1e-3
    bottleneck.set_weights([kernel, bias])
    return copy


def test_a_planted_half_dead_cnn_gets_a_health_record_and_a_warning(demo_64, learnt_cnn):
    from test_selection import config, result

    rows = learnt_cnn.split.train
    images, labels = normalize(np.asarray(demo_64.images[rows]), "unit"), demo_64.labels[rows]
    healthy_activations = relu_activations(learnt_cnn.model, images)
    healthy = output_health(labels, learnt_cnn.probabilities["train"], layers=layer_health(healthy_activations, labels))
    assert healthy.problem is None and healthy.layers[0].layer == "bottleneck" and healthy.layers[0].units == 4

    planted = half_dead_copy(learnt_cnn.model, images, labels)
    probabilities = planted.predict(images, verbose=0).ravel().astype(float)
    activations = relu_activations(planted, images)
    health = output_health(labels, probabilities, layers=layer_health(activations, labels), restarts=2)
    [bottleneck] = health.layers
    assert bottleneck.dead_by_class["no helmet"] == 4 and bottleneck.dead_by_class["helmet"] < 4
    assert health.identical_share_by_class["no helmet"] == 1.0 and health.spread_by_class["no helmet"] == 0.0
    bias = float(planted.get_layer("prediction").get_weights()[1][0])
    assert health.most_common_output == pytest.approx(1 / (1 + np.exp(-bias)), abs=1e-6)
    assert "one identical output" in health.problem and "100% of the training no helmet images" in health.problem

    record = replace(result("cnn", [0.9]), deployed_health=health)
    warnings = run_warnings(config(), {"cnn": record}, None, None)
    assert ("warning", f"cnn: the deployed model (repeat) {health.problem}.") in warnings
    assert not any(
        "deployed model" in text for _, text in run_warnings(config(), {"cnn": result("cnn", [0.9])}, None, None)
    )


def test_the_healthy_start_leaves_every_bottleneck_unit_firing_on_about_half_the_images(demo_64):
    images = normalize(np.asarray(demo_64.images[:64]), "unit")
    keras.utils.set_random_seed(0)
    model = simple_cnn((64, 64, 3))
    healthy_start(model, images)
    activations = relu_activations(model, images)["bottleneck"]
    assert np.allclose((activations > 0).mean(axis=0), 0.5, atol=1 / 64)  # bias at each unit's median
    pre_activations = keras.Model(model.inputs, model.get_layer("bottleneck").input).predict(images, verbose=0)
    kernel, bias = model.get_layer("bottleneck").get_weights()
    np.testing.assert_allclose((pre_activations @ kernel).std(axis=0), 1.0, rtol=1e-3)
    np.testing.assert_allclose(pre_activations.mean(axis=0) @ kernel, 0.0, atol=1e-3)  # blind to what images share
    assert not model.get_layer("prediction").get_weights()[0].any()


@pytest.fixture(scope="module")
def linear_repeats(demo_small, tmp_path_factory):
    parts = split(demo_small.labels)
    options = {"weights": None, "batch_size": 8, "epochs": 5, "cache_dir": tmp_path_factory.mktemp("cache")}
    repeats = train_repeats("vgg16_gap", demo_small, parts, repeats=3, seed=5, **options)
    assert not any(trained.collapsed for trained in repeats)
    return repeats


def test_the_seed_ensemble_is_deployed_unless_validation_shows_it_clearly_worse(demo_small, linear_repeats):
    deployed = choose_seed_ensemble(linear_repeats, demo_small, n_resamples=300)
    labels = demo_small.labels[linear_repeats[0].split.validation]
    average = np.mean([trained.probabilities["validation"] for trained in linear_repeats], axis=0)
    if deployed.description.startswith("seed ensemble"):
        np.testing.assert_allclose(deployed.probabilities["validation"], average)
        assert deployed.seeds == (5, 6, 7) and "includes 0" in deployed.reason
        x = normalize(np.asarray(demo_small.images[linear_repeats[0].split.validation]), "vgg16")
        np.testing.assert_allclose(deployed.model.predict(x, verbose=0).ravel(), average, atol=1e-5)
    else:  # only when the paired interval lies above 0
        assert "clearly worse" in deployed.reason
    assert deployed.ensemble_validation == performance(labels, average)

    # planted: the first repeat is perfect, the other two confidently wrong, so their mean is wrong everywhere
    perfect = np.where(labels == 1, 0.9, 0.1)
    planted = [
        replace(trained, probabilities={**trained.probabilities, "validation": p})
        for trained, p in zip(linear_repeats, [perfect, 1 - perfect, 1 - perfect], strict=True)
    ]
    single = choose_seed_ensemble(planted, demo_small, n_resamples=300)
    assert single.description == "repeat with seed 5" and "clearly worse" in single.reason
    assert single.ensemble_validation.f1 == 0.0 and single.probabilities["validation"] is perfect

    # planted: three repeats that each miss another image: their mean misses none, the ensemble is deployed
    wrong = [perfect.copy() for _ in range(3)]
    for index, probabilities in enumerate(wrong):
        probabilities[index] = 0.6 if labels[index] == 0 else 0.4  # each repeat gets one image wrong, barely
    ensemble = choose_seed_ensemble(
        [
            replace(t, probabilities={**t.probabilities, "validation": p})
            for t, p in zip(linear_repeats, wrong, strict=True)
        ],
        demo_small,
        n_resamples=300,
    )
    assert ensemble.description == "seed ensemble of 3 repeats"
    assert ensemble.ensemble_validation.f1 == 1.0
    assert ensemble.health.layers == () and ensemble.health.restarts == 0


def test_calibration_lowers_the_error_of_a_miscalibrated_model():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, 600)  # the real P(helmet) of each image
    labels = (rng.uniform(size=600) < truth).astype(int)
    logit = np.log(truth / (1 - truth))
    overconfident = 1 / (1 + np.exp(-3 * logit))  # a model that says 0.99 where the truth is 0.82
    calibration = fit_calibration(labels, overconfident)
    assert calibration.folds == 5 and calibration.fitted_on == 600
    assert calibration.ece_before > 0.1 and calibration.ece_after < calibration.ece_before / 2
    assert calibration.brier_after < calibration.brier_before
    assert 0.25 < calibration.slope < 0.45  # it undoes the factor 3
    calibrated = calibration.apply(overconfident)
    assert (np.diff(calibrated[np.argsort(overconfident)]) >= 0).all()  # monotone: no ranking changes
    assert np.abs(calibrated - truth).mean() < np.abs(overconfident - truth).mean() / 2
    assert fit_calibration(labels, 1 - overconfident) is None  # ranks the classes the wrong way round
    assert fit_calibration(labels, np.full(600, 0.48)) is None  # constant: nothing to calibrate


def planted_repeat(trained, model, dataset, *, seed):
    """`trained` with `model` in its place: its probabilities and health measured as training measures them."""
    parts = {part: getattr(trained.split, part) for part in ("train", "validation")}
    probabilities = {
        part: model.predict(normalize(np.asarray(dataset.images[rows]), "unit"), verbose=0).ravel().astype(float)
        for part, rows in parts.items()
    }
    images = normalize(np.asarray(dataset.images[parts["train"]]), "unit")
    labels = dataset.labels[parts["train"]]
    layers = layer_health(relu_activations(model, images), labels)
    health = output_health(labels, probabilities["train"], layers=layers)
    return replace(trained, model=model, probabilities=probabilities, health=health, seed=seed, seed_used=seed)


def test_a_half_dead_repeat_is_left_out_of_the_seed_ensemble_and_named_on_the_page(demo_64, learnt_cnn):
    from test_selection import config

    from helmetlib.evaluation.results import DataInfo
    from helmetlib.training.seed_ensemble import model_result

    data = DataInfo.of(demo_64, "")
    rows = learnt_cnn.split.train
    images, labels = normalize(np.asarray(demo_64.images[rows]), "unit"), demo_64.labels[rows]
    half_dead = planted_repeat(learnt_cnn, half_dead_copy(learnt_cnn.model, images, labels), demo_64, seed=813)
    assert half_dead.health.problem and learnt_cnn.health.problem is None
    twin = replace(learnt_cnn, seed=814)
    deployed = choose_seed_ensemble([learnt_cnn, half_dead, twin], demo_64, n_resamples=200)
    assert deployed.seeds == (812, 814) and deployed.description == "seed ensemble of 2 repeats"
    assert list(deployed.left_out) == [813] and deployed.left_out[813].startswith("unhealthy: it gives one identical")
    average = np.mean([learnt_cnn.probabilities["validation"], twin.probabilities["validation"]], axis=0)
    np.testing.assert_allclose(deployed.probabilities["validation"], average)
    result = model_result([learnt_cnn, half_dead, twin], deployed, demo_64, data, threshold=0.5)
    warnings = run_warnings(config(), {"cnn": result}, None, None)
    assert ("info", f"cnn: left out of the seed ensemble: seed 813 ({deployed.left_out[813]}).") in warnings

    nobody = choose_seed_ensemble([half_dead, replace(half_dead, seed=815)], demo_64, n_resamples=200)
    assert nobody.unhealthy and nobody.seeds == (813,) and nobody.reason.startswith("no repeat is healthy")
    result = model_result([half_dead], nobody, demo_64, data, threshold=0.5)
    [danger] = [text for level, text in run_warnings(config(), {"cnn": result}, None, None) if level == "danger"]
    assert danger.startswith("cnn: no repeat is healthy; the deployed repeat with seed 813 gives one identical")


def test_a_training_half_dead_at_its_health_check_is_restarted_then_in_fast_mode_only(demo_64):
    """Seed 813 of the CNN on the demo set gives one identical output to every helmet from early on and to its last
    epoch: fast mode checks its health three quarters through (epoch 11 of 15), stops it there and restarts it (at
    most twice) with the next restart seeds; a training that cannot be restarted runs all its epochs; --faithful
    keeps the study's training."""
    from helmetlib.evaluation.results import DataInfo
    from helmetlib.reports.narrative import model_conclusion
    from helmetlib.training.seed_ensemble import model_result

    parts = split(demo_64.labels)
    options = {"weights": None, "epochs": 15, "batch_size": 16}
    faithful = train_repeats("cnn", demo_64, parts, seed=813, faithful=True, max_restarts=0, **options)[0]
    assert faithful.epochs_run == 15 and "identical output" in faithful.health.problem  # half-dead at its end
    assert not any(restart.reason.startswith("half-dead") for restart in faithful.restarts)
    last_chance = train_repeats("cnn", demo_64, parts, seed=813, max_restarts=0, **options)[0]
    assert last_chance.epochs_run == 15 and not last_chance.restarts  # no restart can follow: no check
    fast = train_repeats("cnn", demo_64, parts, seed=813, **options)[0]
    health_restarts = [restart for restart in fast.restarts if restart.reason.startswith("half-dead")]
    assert health_restarts and health_restarts[0].seed == 813 and health_restarts[0].epoch == 11
    assert "identical output" in health_restarts[0].reason and len(health_restarts) <= 2
    deployed = choose_seed_ensemble([fast], demo_64, n_resamples=200)
    result = model_result([fast], deployed, demo_64, DataInfo.of(demo_64, ""), threshold=0.5)
    assert "its training with seed 813 was stopped after epoch 11 (half-dead: gives one identical" in (
        model_conclusion(result)
    )
    assert fast.seed_used == 813 + len(fast.restarts) * 100_003
