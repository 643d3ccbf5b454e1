"""Train a model on a split, repeatedly over seeds, with collapse detection and health restarts.

`train_repeats` trains an architecture `repeats` times (seeds `seed`, `seed + 1`, ...) through its head family's
trainer (`trainers`), sharing the backbone features and augmented views between repeats and restarts. A model whose
output stops depending on its input (the CNN's Dense(4, relu) bottleneck can die) is caught at the end of the
epoch it happens in and trained again with another seed, up to `max_restarts` times; in fast mode a training that
is unhealthy (`Health.problem`) three quarters through its epochs stops and is restarted then, and one that ends
unhealthy is restarted too, at most `HEALTH_RESTARTS` times in all. Every restart is recorded.
Models whose validation predictions are (nearly) one class are flagged `collapsed`. `model_result` turns the repeats
and the model kept of them are chosen and recorded by `seed_ensemble`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helmetlib.core import specs
from helmetlib.core.backend import keras
from helmetlib.core.specs import get_spec
from helmetlib.core.weights import WeightsChoice, resolve_weights
from helmetlib.data.dataset import Dataset
from helmetlib.data.splits import Split
from helmetlib.evaluation.health import Health
from helmetlib.evaluation.metrics import is_collapsed
from helmetlib.evaluation.results import Restart, TrainingDetails
from helmetlib.models.features import FeatureCache
from helmetlib.training.batches import predict_proba, progress_line
from helmetlib.training.trainers import Trainer, TrainingInputs, make_trainer

__all__ = ["TrainedModel", "predict_proba", "train_model", "train_repeats"]

RESTART_SEED_STEP = 100_003  # restart k of seed s uses s + k * step: never another repeat's seed
HEALTH_RESTARTS = 2  # fast mode: an unhealthy training is restarted at most this often (docs/seeds.md)
UNHEALTHY = "half-dead"  # the reason a health restart starts with
HEALTH_CHECK_AT = 0.75  # of the epochs: a training unhealthy then stops and restarts at once (docs/seeds.md)


@dataclass
class TrainedModel:
    """A trained model: the full image model, its head (backbone models), history, probabilities, how it ran."""

    name: str
    model: keras.Model
    head: keras.Model | None
    history: dict[str, list[float]]
    probabilities: dict[str, np.ndarray]
    weights: WeightsChoice | None
    mode: str
    precision: str
    seconds: float
    seed: int
    seed_used: int
    collapsed: bool
    split: Split
    restarts: list[Restart] = field(default_factory=list)
    health: Health | None = None
    view_precision: str | None = None
    details: TrainingDetails | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def train_model(
    name: str,
    dataset: Dataset,
    split: Split,
    *,
    weights: str | Path | WeightsChoice | None = "imagenet",
    epochs: int = specs.EPOCHS,
    batch_size: int = specs.BATCH_SIZE,
    seed: int = specs.SEED,
    faithful: bool = False,
    augmented_views: int = specs.AUGMENTED_VIEWS,
    views_seed: int | None = None,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    max_restarts: int = specs.MAX_RESTARTS,
    threshold: float = specs.THRESHOLD,
    verbose: int = 0,
) -> TrainedModel:
    """Build `name`, train it on `split.train` with `split.validation` for validation, predict both parts.

    Fast mode (default) trains a VGG16 model's head on backbone features computed once (cached under
    `cache_dir`), in the machine's faster precision (`feature_precision`) unless `precision` says otherwise; model 4
    trains on `augmented_views` pre-drawn augmented views per training image (drawn from `views_seed`, default
    `seed`), in the same precision. `faithful=True` runs the study's computation instead. A collapse (constant output)
    restarts training with seed `seed + k * 100003`, at most `max_restarts` times; `collapsed` says whether the
    final model's validation predictions are (nearly) one class.
    """
    [trained] = train_repeats(
        name,
        dataset,
        split,
        repeats=1,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        faithful=faithful,
        augmented_views=augmented_views,
        views_seed=views_seed,
        cache_dir=cache_dir,
        precision=precision,
        max_restarts=max_restarts,
        threshold=threshold,
        verbose=verbose,
    )
    return trained


def train_repeats(
    name: str,
    dataset: Dataset,
    split: Split | list[Split],
    *,
    repeats: int = 1,
    seed: int = specs.SEED,
    weights: str | Path | WeightsChoice | None = "imagenet",
    epochs: int = specs.EPOCHS,
    batch_size: int = specs.BATCH_SIZE,
    faithful: bool = False,
    augmented_views: int = specs.AUGMENTED_VIEWS,
    views_seed: int | None = None,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    max_restarts: int = specs.MAX_RESTARTS,
    threshold: float = specs.THRESHOLD,
    verbose: int = 0,
) -> list[TrainedModel]:
    """Train `name` `repeats` times, with seeds `seed`, `seed + 1`, ..., on one split (or on `split[i]` each).

    The backbone features and augmented views are computed once and shared by the repeats (views are drawn from
    `views_seed`, default `seed`); only the head's initialisation, the batch order and dropout change with the
    seed. Options as in `train_model`. A deterministic model (`ModelSpec.deterministic`) is fitted once per
    distinct split: its repeats would be identical copies.
    """
    spec = get_spec(name)
    choice = resolve_weights(weights) if spec.uses_backbone else None
    splits = split if isinstance(split, list) else [split] * repeats
    if len(splits) != repeats:
        raise ValueError(f"{len(splits)} splits for {repeats} repeats; give one split or one per repeat")
    if spec.deterministic:
        splits = [part for index, part in enumerate(splits) if not any(part.same_parts(s) for s in splits[:index])]
        repeats = len(splits)
    trainers: list[Trainer] = []  # one per distinct split (a split's parts tell it from another)
    trained = []
    for index, part in enumerate(splits):
        label = f"{name}" + (f" repeat {index + 1}/{repeats}" if repeats > 1 else "")
        started = time.perf_counter()
        trainer = next((known for known in trainers if known.split.same_parts(part)), None)
        if trainer is None:
            inputs = TrainingInputs(
                spec=spec,
                dataset=dataset,
                split=part,
                weights=choice,
                batch_size=batch_size,
                faithful=faithful,
                augmented_views=augmented_views,
                views_seed=seed if views_seed is None else views_seed,
                cache=FeatureCache(cache_dir),
                precision=precision,
            )
            trainer = make_trainer(inputs)
            trainers.append(trainer)
        trained.append(
            _train_with_restarts(trainer, seed + index, epochs, max_restarts, threshold, label, verbose, started)
        )
    return trained


def _train_with_restarts(trainer, seed, epochs, max_restarts, threshold, label, verbose, started) -> TrainedModel:
    """Train until an attempt neither collapses nor (fast mode, at most `HEALTH_RESTARTS` times) is unhealthy,
    at its health check (`HEALTH_CHECK_AT`, when a restart can follow; the attempt stops there) or at its end;
    each abandoned attempt is a `Restart` with its reason and epoch, the next one uses the next restart seed."""
    restarts: list[Restart] = []
    for number in range(max_restarts + 1):
        seed_used = seed + number * RESTART_SEED_STEP
        health_restarts = sum(restart.reason.startswith(UNHEALTHY) for restart in restarts)
        restarts_unhealthy = trainer.restarts_unhealthy and health_restarts < HEALTH_RESTARTS
        check_at = None  # the epoch whose end checks the training's health, when a restart can follow
        if restarts_unhealthy and number < max_restarts:
            check_at = int(epochs * HEALTH_CHECK_AT) or None  # none in a one-epoch training
        attempt = trainer.fit(seed_used, epochs, label, verbose, check_health_at=check_at)
        epoch = len(attempt.history.get("loss", []))
        if attempt.unhealthy is not None:  # stopped by its health check, which runs only when a restart follows
            restart = Restart(seed=seed_used, epoch=epoch, reason=_unhealthy(attempt.unhealthy))
        else:
            probabilities = trainer.predict(attempt)
            health = trainer.health(attempt, probabilities["train"], restarts=len(restarts))
            if attempt.collapsed_at is not None:
                restart = Restart(seed=seed_used, epoch=attempt.collapsed_at, reason="constant output (dead units)")
            elif health.problem and restarts_unhealthy:
                restart = Restart(seed=seed_used, epoch=epoch, reason=_unhealthy(health))
            else:
                break
            if number == max_restarts:
                break
        restarts.append(restart)
        progress_line(f"{label}: {restart.reason} at epoch {restart.epoch} (seed {seed_used}), restarting")
    collapsed = attempt.collapsed_at is not None or is_collapsed(
        trainer.labels["validation"], probabilities["validation"], threshold=threshold
    )
    return TrainedModel(
        name=trainer.spec.name,
        model=attempt.model,
        head=attempt.head,
        history=attempt.history,
        probabilities=probabilities,
        weights=trainer.weights,
        mode=trainer.mode,
        precision=trainer.precision,
        view_precision=trainer.view_precision,
        seconds=time.perf_counter() - started,
        seed=seed,
        seed_used=seed_used,
        collapsed=collapsed,
        restarts=restarts,
        health=health,
        details=trainer.details(),
        split=trainer.split,
    )


def _unhealthy(health: Health) -> str:
    """The reason of a health restart."""
    return f"{UNHEALTHY}: {health.symptom}"
