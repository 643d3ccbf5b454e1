"""The EDA's claims follow stated rules on the numbers it shows: "alike / differ" from the standardised difference
and its interval, "optimistic" from the interval of the random-minus-grouped accuracy."""

import numpy as np
import pandas as pd
import pytest

from helmetlib.evaluation.uncertainty import Interval
from helmetlib.reports.eda import ClassDifference, SplitCheck, class_differences, statistics_table


def planted_statistics(shift: float, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Brightness, contrast and sharpness per image, helmets `shift` standard deviations brighter."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, name in ((0, "no helmet"), (1, "helmet")):
        brightness = rng.normal(100 + 10 * shift * label, 10, n)
        rows.append(
            pd.DataFrame(
                {
                    "class": name,
                    "brightness": brightness,
                    "contrast": rng.normal(40, 5, n),
                    "sharpness": rng.normal(300, 50, n),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize(("shift", "verdict"), [(0.0, "alike"), (0.35, "differ a little"), (0.8, "differ")])
def test_alike_or_differ_follows_the_standardised_difference_and_its_interval(shift, verdict):
    [brightness, contrast, _] = class_differences(planted_statistics(shift))
    assert brightness.effect.low <= brightness.effect.value <= brightness.effect.high
    assert abs(brightness.effect.value - shift) < 0.15  # the planted shift, in pooled standard deviations
    assert brightness.verdict == verdict and contrast.verdict == "alike"
    table = statistics_table([brightness])
    assert table.loc["brightness", "verdict"] == verdict and " ± " in table.loc["brightness", "helmet"]


def test_a_difference_of_0_42_is_never_called_alike():
    difference = ClassDifference("sharpness", (1.0, 1.0), (1.4, 1.0), Interval(value=0.42, low=0.26, high=0.58))
    assert difference.verdict == "differ a little"
    unsure = ClassDifference("sharpness", (1.0, 1.0), (1.4, 1.0), Interval(value=0.42, low=-0.05, high=0.9))
    assert unsure.verdict == "alike"  # the interval includes 0: no evidence of a difference


def test_the_random_split_is_called_optimistic_only_when_its_interval_says_so():
    def check(value, low, high):
        return SplitCheck("vgg16_linear", 80, {}, {}, Interval(value=value, low=low, high=high)).verdict

    assert check(0.08, 0.02, 0.14).startswith("the random split is optimistic")
    assert check(-0.082, -0.15, -0.01).startswith(
        "no sign that the random split is optimistic: the grouped split scored higher by 0.082"
    )
    assert check(0.02, -0.05, 0.09).startswith("cannot tell whether the random split is optimistic")
