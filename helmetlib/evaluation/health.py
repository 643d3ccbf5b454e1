"""Is a trained model healthy? Dead ReLU units feeding its output, identical outputs, the output spread per class.

The study's CNN ends in Dense(4, relu) -> Dense(1, sigmoid): when the four units are all zero for an image, its
output is sigmoid(bias), the same number for every such image. A model can be "half-dead" (dead for most images of
one class) and still score well on 90 validation images, yet it cannot rank those images at all. `output_health`
and `layer_health` measure this on training inputs (`train` computes the activations); `Health.problem` says when a
model is unhealthy: a training whose outputs are that way three quarters through its epochs or at its end is restarted
(fast mode), and a repeat that stays unhealthy is left out of its seed ensemble.

The thresholds come from the seeds study (docs/seeds.md): over the CNN's 12 repeat seeds behind seeds 0-9 on
helmet-dev, the identical-output share on training images is bimodal, at most 4 % (7 % of one class) for healthy
repeats and 48-54 % (91-99 % of one class) for half-dead ones, with nothing between; `HALF_DEAD_SHARE` and
`ONE_CLASS_SHARE` sit in that gap. Half-dead repeats ranked photos from elsewhere worse (ROC AUC 0.875-0.937, mean
0.906, against 0.912-0.959, mean 0.935).
"""

from __future__ import annotations

import numpy as np

from helmetlib.core.records import Record, record
from helmetlib.data.dataset import CLASS_NAMES

IDENTICAL = 1e-6  # outputs closer than this to the most common one count as identical
HEALTH_SAMPLE_SIZE = 256  # training inputs whose activations tell dead units
HALF_DEAD_SHARE = 0.25  # a quarter of the training inputs getting one identical output: half-dead
ONE_CLASS_SHARE = 0.5  # likewise for half the inputs of one class


@record
class LayerHealth(Record):
    """Units of one ReLU layer that feeds the output, and how many never fire on the sampled training inputs
    (overall and per true class)."""

    layer: str
    units: int
    dead: int
    dead_by_class: dict[str, int]


@record
class Health(Record):
    """How alive a model is on its training inputs.

    `identical_share`: the share of inputs whose P(helmet) equals the most common output (to 1e-6), overall and
    per true class; `spread_by_class`: the standard deviation of P(helmet) per true class; `restarts`: trainings
    abandoned after a collapse before this one.
    """

    layers: tuple[LayerHealth, ...]
    most_common_output: float
    identical_share: float
    identical_share_by_class: dict[str, float]
    spread_by_class: dict[str, float]
    restarts: int

    @property
    def problem(self) -> str | None:
        """What is wrong and why it matters, in words, when one identical output goes to `HALF_DEAD_SHARE` of the
        training inputs or `ONE_CLASS_SHARE` of one class's (`symptom`); None for a healthy model."""
        symptom = self.symptom
        if symptom is None:
            return None
        return symptom + ": it cannot rank those images, and their probability says nothing about them"

    @property
    def symptom(self) -> str | None:
        """What is wrong, in words (the identical output, to which images, the dead units); None when healthy."""
        stuck = [name for name, share in self.identical_share_by_class.items() if share >= ONE_CLASS_SHARE]
        if not stuck and self.identical_share < HALF_DEAD_SHARE:
            return None
        where = (
            f"{max(self.identical_share_by_class[name] for name in stuck):.0%} of the training {' and '.join(stuck)} "
            "images"
            if stuck
            else f"{self.identical_share:.0%} of the training images"
        )
        dead = ", ".join(f"{layer.dead} of {layer.units} units of {layer.layer}" for layer in self.layers if layer.dead)
        return f"gives one identical output (P(helmet) {self.most_common_output:.4f}) to {where}" + (
            f" ({dead} never fire)" if dead else ""
        )


def identical_outputs(probabilities: np.ndarray) -> tuple[float, np.ndarray]:
    """(the most common output, which of `probabilities` (n,) equal it to `IDENTICAL`)."""
    rounded = np.round(np.asarray(probabilities, dtype=float) / IDENTICAL)
    values, counts = np.unique(rounded, return_counts=True)
    common = values[np.argmax(counts)]
    return float(common * IDENTICAL), rounded == common


def output_health(labels: np.ndarray, probabilities: np.ndarray, *, layers=(), restarts: int = 0) -> Health:
    """`Health` from P(helmet) (n,) of training inputs with their labels (n,), and layer figures if measured."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    common, identical = identical_outputs(probabilities)
    classes = [label for label in (0, 1) if (labels == label).any()]
    return Health(
        layers=tuple(layers),
        most_common_output=common,
        identical_share=float(identical.mean()),
        identical_share_by_class={CLASS_NAMES[c]: float(identical[labels == c].mean()) for c in classes},
        spread_by_class={CLASS_NAMES[c]: float(probabilities[labels == c].std()) for c in classes},
        restarts=restarts,
    )


def layer_health(activations: dict[str, np.ndarray], labels: np.ndarray) -> list[LayerHealth]:
    """Dead units of each ReLU layer from its activations {layer name: (n, units)} on inputs with labels (n,)."""
    labels = np.asarray(labels)
    return [
        LayerHealth(
            layer=name,
            units=int(values.shape[-1]),
            dead=int((values.max(axis=0) <= 0).sum()),
            dead_by_class={
                CLASS_NAMES[c]: int((values[labels == c].max(axis=0) <= 0).sum()) for c in (0, 1) if (labels == c).any()
            },
        )
        for name, values in activations.items()
    ]
