"""The seed ensemble rule: what is kept of an architecture's repeats. By default one model averaging the healthy
repeats' probabilities (for backbone models: one backbone under an averaged head); the best repeat instead only when
validation shows the ensemble clearly worse, or when there is nothing to average. `model_result` records the
repeats and the kept model as the typed record the comparison reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helmetlib.core import specs
from helmetlib.core.backend import keras
from helmetlib.core.specs import get_spec
from helmetlib.data.dataset import Dataset
from helmetlib.evaluation.health import Health, output_health
from helmetlib.evaluation.metrics import Scores, performance
from helmetlib.evaluation.results import DataInfo, ModelResult, RepeatResult
from helmetlib.evaluation.uncertainty import brier_score, f1_difference
from helmetlib.models.builders import BACKBONE_LAYER, HEAD_LAYER, assemble, average_of
from helmetlib.training.repeats import TrainedModel


@dataclass
class SeedEnsembleChoice:
    """The model kept for an architecture: the seed ensemble of its healthy repeats, or its best repeat when
    validation shows the ensemble clearly worse (or there is nothing to average); `reason` says which. `left_out`:
    the repeats (by seed) kept out of the seed ensemble, and why; `unhealthy`: no repeat was healthy, so the best
    one is deployed all the same (a red warning on every page)."""

    model: keras.Model
    head: keras.Model | None
    probabilities: dict[str, np.ndarray]
    description: str
    reason: str
    seeds: tuple[int, ...]
    best_repeat: TrainedModel
    ensemble_validation: Scores | None
    health: Health | None
    left_out: dict[int, str] = field(default_factory=dict)
    unhealthy: bool = False


def choose_seed_ensemble(
    repeats: list[TrainedModel],
    dataset: Dataset,
    *,
    threshold: float = specs.THRESHOLD,
    n_resamples: int = 2000,
) -> SeedEnsembleChoice:
    """Choose what to keep of `repeats`: by default one model averaging the probabilities of the healthy repeats
    (neither collapsed nor flagged by `Health.problem`: the seed ensemble; repeats on one split only). The best
    healthy repeat on validation F1 is kept instead only when validation shows the ensemble clearly worse: the
    paired bootstrap 95 % interval of the F1 difference (best repeat minus ensemble, `n_resamples` resamples of the
    validation images) lies above 0. When no repeat is healthy, the best non-collapsed one is deployed, `unhealthy`.

    One validation set of ~90 images cannot tell a repeat that generalises from a lucky one, while the average of
    the repeats ranks photos from elsewhere better than any one of them (see docs/seeds.md).
    """
    left_out = {trained.seed: _unfit_for_ensemble(trained) for trained in repeats if _unfit_for_ensemble(trained)}
    healthy = [trained for trained in repeats if trained.seed not in left_out]
    usable = healthy or [trained for trained in repeats if not trained.collapsed] or repeats
    scores = [validation_scores(trained, dataset, threshold) for trained in usable]
    best = usable[max(range(len(usable)), key=lambda i: (scores[i].f1, -i))]
    single = _best_repeat(best, repeats, left_out=left_out, unhealthy=not healthy)
    if len(usable) < 2 or not healthy:
        return single
    if not all(trained.split.same_parts(repeats[0].split) for trained in usable):
        single.reason = "repeats on different splits (RESPLIT) cannot be averaged: the best on validation F1"
        return single
    averaged = {part: np.mean([t.probabilities[part] for t in usable], axis=0) for part in ("train", "validation")}
    validation_labels = dataset.labels[best.split.validation]
    single.ensemble_validation = performance(validation_labels, averaged["validation"], threshold=threshold)
    difference = f1_difference(
        validation_labels,
        best.probabilities["validation"],
        averaged["validation"],
        threshold=threshold,
        n_resamples=n_resamples,
    )
    if difference.low > 0:
        single.reason = (
            f"validation shows the seed ensemble clearly worse: best repeat minus ensemble F1 {difference.text()} "
            "(paired bootstrap)"
        )
        return single
    reason = (
        "the seed ensemble, deployed unless validation shows it clearly worse: best repeat minus ensemble F1 "
        f"{difference.text()} (paired bootstrap; the interval includes 0)"
    )
    deployed = _seed_ensemble(usable, best, averaged, dataset, reason=reason, validation=single.ensemble_validation)
    deployed.left_out = left_out
    return deployed


def _unfit_for_ensemble(trained: TrainedModel) -> str | None:
    """Why a repeat is kept out of its seed ensemble (collapsed, or unhealthy by `Health.problem`), or None."""
    if trained.collapsed:
        return "collapsed: (nearly) one class on validation"
    problem = trained.health.problem if trained.health else None
    return f"unhealthy: it {problem}" if problem else None


def _best_repeat(
    best: TrainedModel, repeats: list[TrainedModel], *, left_out: dict, unhealthy: bool
) -> SeedEnsembleChoice:
    """`best` deployed alone, described and with the reason when it is the only usable one (a deterministic
    model's one fit needs none)."""
    if get_spec(best.name).deterministic:
        description, reason = "deterministic: one fit, the seed changes nothing", ""
    else:
        description = f"repeat with seed {best.seed}" + (" (collapsed)" if best.collapsed else "")
        if len(repeats) == 1:
            reason = "only one repeat" + (", and it is unhealthy" if unhealthy else "")
        elif unhealthy:
            reason = f"no repeat is healthy: the best of {len(repeats)} on validation F1, deployed with a warning"
        else:
            reason = "only one repeat is healthy"
    return SeedEnsembleChoice(
        model=best.model,
        head=best.head,
        probabilities=best.probabilities,
        description=description,
        reason=reason,
        seeds=(best.seed,),
        best_repeat=best,
        ensemble_validation=None,
        health=best.health,
        left_out=left_out,
        unhealthy=unhealthy,
    )


def _seed_ensemble(
    usable: list[TrainedModel], best: TrainedModel, averaged: dict, dataset: Dataset, *, reason: str, validation
) -> SeedEnsembleChoice:
    """One model averaging the outputs of `usable` (for backbone models: one backbone under an averaged head)."""
    if best.head is None:
        model, head = average_of([trained.model for trained in usable], name=best.name), None
    else:
        head = average_of([trained.head for trained in usable], name=HEAD_LAYER)
        model = assemble(best.name, best.model.get_layer(BACKBONE_LAYER), head)
    return SeedEnsembleChoice(
        model=model,
        head=head,
        probabilities=averaged,
        description=f"seed ensemble of {len(usable)} repeats",
        reason=reason,
        seeds=tuple(trained.seed for trained in usable),
        best_repeat=best,
        ensemble_validation=validation,
        health=output_health(
            dataset.labels[best.split.train],
            averaged["train"],
            restarts=sum(len(trained.restarts) for trained in usable),
        ),
    )


def validation_scores(trained: TrainedModel, dataset: Dataset, threshold: float) -> Scores:
    return performance(
        dataset.labels[trained.split.validation], trained.probabilities["validation"], threshold=threshold
    )


def model_result(
    repeats: list[TrainedModel], deployed: SeedEnsembleChoice, dataset: Dataset, data: DataInfo, *, threshold: float
) -> ModelResult:
    """The typed record of an architecture's repeats and deployed model (what the comparison reads)."""
    first = repeats[0]
    spec = get_spec(first.name)
    model, member = deployed.model, deployed.best_repeat.model
    split = deployed.best_repeat.split
    repeat_results = tuple(
        RepeatResult(
            seed=trained.seed,
            seed_used=trained.seed_used,
            split_seed=trained.split.random_state,
            train=performance(dataset.labels[trained.split.train], trained.probabilities["train"], threshold=threshold),
            validation=validation_scores(trained, dataset, threshold),
            epochs_run=trained.epochs_run,
            collapsed=trained.collapsed,
            restarts=tuple(trained.restarts),
            seconds=round(trained.seconds, 2),
            health=trained.health,
        )
        for trained in repeats
    )
    return ModelResult(
        name=spec.name,
        description=spec.description,
        parameters=int(member.count_params()),  # one member of a seed ensemble: `deployed_seeds` says how many
        trainable_parameters=int(sum(int(np.prod(w.shape)) for w in member.trainable_weights)),
        normalization=spec.normalization,
        input_shape=tuple(int(size) for size in model.input_shape[1:]),
        mode=first.mode,
        precision=first.precision,
        view_precision=first.view_precision,
        weights=first.weights,
        threshold=threshold,
        repeats=repeat_results,
        deployed=deployed.description,
        deployed_reason=deployed.reason,
        deployed_seeds=deployed.seeds,
        deployed_health=deployed.health,
        left_out={str(seed): why for seed, why in deployed.left_out.items()},
        unhealthy=deployed.unhealthy,
        train=performance(dataset.labels[split.train], deployed.probabilities["train"], threshold=threshold),
        validation=performance(
            dataset.labels[split.validation], deployed.probabilities["validation"], threshold=threshold
        ),
        validation_brier=brier_score(dataset.labels[split.validation], deployed.probabilities["validation"]),
        best_repeat_validation=validation_scores(deployed.best_repeat, dataset, threshold),
        ensemble_validation=deployed.ensemble_validation,
        details=first.details,
        data=data,
        split=split.record(),
        train_seconds=round(sum(trained.seconds for trained in repeats), 2),
    )
