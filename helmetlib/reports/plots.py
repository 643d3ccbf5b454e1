"""Figures over datasets and over the results of `helmetlib.evaluation.metrics` (each takes `ax=None` and returns
the figure).

Every figure carries a description of what it shows (`described`, read by `description`): in a notebook,
`show_figures_described` has figures shown as an image with that description as its alternative text, which the
HTML reports keep (nbconvert would write "No description has been provided for this image"). Figures made of
photos (sample, prediction, pair and Grad-CAM grids) carry the label `PHOTOS` and are shown as JPEG, a fifth of the
bytes of PNG for photos; the rest as PNG.
"""

from __future__ import annotations

import base64
import html
import weakref

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from helmetlib.data.dataset import CLASS_NAMES

PHOTOS = "helmetlib-photos"
JPEG_QUALITY = 85
_DESCRIPTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def described(fig, text: str):
    """`fig`, with `text` (its title and what it shows) as its description; returns `fig`."""
    _DESCRIPTIONS[fig] = text
    return fig


def description(fig) -> str:
    """A figure's description: the one it was given, else its titles."""
    if fig in _DESCRIPTIONS:
        return _DESCRIPTIONS[fig]
    titles = [text for text in (fig._suptitle.get_text() if fig._suptitle else "",) if text]
    titles += [
        ax.get_title() or ax.get_title(loc="left") for ax in fig.axes if ax.get_title() or ax.get_title(loc="left")
    ]
    return "Figure: " + "; ".join(titles) if titles else "Figure"


def image_tag(fig, *, dpi: int | None = None) -> str:
    """`<img>` of `fig` (JPEG for photos, else PNG) with its description as alternative text and title."""
    import io

    jpeg = fig.get_label() == PHOTOS
    buffer = io.BytesIO()
    options = {"pil_kwargs": {"quality": JPEG_QUALITY}} if jpeg else {}
    fig.savefig(buffer, format="jpeg" if jpeg else "png", bbox_inches="tight", dpi=dpi, **options)
    data = base64.b64encode(buffer.getvalue()).decode()
    text = html.escape(description(fig), quote=True)
    return f'<img alt="{text}" title="{text}" src="data:image/{"jpeg" if jpeg else "png"};base64,{data}">'


def _axes(ax=None, figsize=(5, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _photos(fig):
    fig.tight_layout()
    fig.set_label(PHOTOS)
    return fig


def show_figures_described() -> None:
    """In IPython, show every matplotlib figure as `image_tag` (HTML: the image with its description as alternative
    text) instead of a bare PNG; elsewhere, nothing."""
    from IPython import get_ipython
    from matplotlib.figure import Figure

    shell = get_ipython()
    if shell is None:
        return
    import matplotlib_inline.backend_inline  # noqa: F401 -- on import, registers the PNG formatter replaced here

    formatters = shell.display_formatter.formatters
    for kind in ("image/png", "image/jpeg"):
        formatters[kind].for_type(Figure, lambda fig: None)  # one output per figure: the described image
    formatters["text/html"].for_type(Figure, image_tag)


def class_balance(labels: np.ndarray, *, ax=None):
    """Bar chart of image counts per class."""
    fig, ax = _axes(ax)
    counts = [int((np.asarray(labels) == label).sum()) for label in (0, 1)]
    bars = ax.bar(CLASS_NAMES, counts, color=["tab:red", "tab:green"])
    ax.bar_label(bars)
    ax.set_ylabel("images")
    ax.set_title("Class balance")
    return described(fig, f"Class balance: {counts[0]} {CLASS_NAMES[0]} and {counts[1]} {CLASS_NAMES[1]} images")


def sample_grid(images: np.ndarray, labels: np.ndarray, *, per_class: int = 6, seed: int = 0, grayscale: bool = False):
    """A row of random example images per class (RGB uint8 (N, H, W, 3)); `grayscale` shows them as the eye sees
    them without colour (luminance), to check that the classes differ by more than colour."""
    from helmetlib.core.preprocess import to_grayscale

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, per_class, figsize=(1.8 * per_class, 4.0), squeeze=False)
    for label in (0, 1):
        candidates = np.flatnonzero(np.asarray(labels) == label)
        chosen = rng.choice(candidates, size=min(per_class, len(candidates)), replace=False)
        for column, ax in enumerate(axes[label]):
            ax.axis("off")
            if column < len(chosen):
                image = images[chosen[column]]
                shown = to_grayscale(image[None])[0] if grayscale else image
                ax.imshow(shown, cmap="gray" if grayscale else None, vmin=0, vmax=255)
        axes[label][0].set_title(CLASS_NAMES[label], loc="left")
    colour = "in grayscale" if grayscale else "in colour"
    return described(_photos(fig), f"Examples per class {colour}: {per_class} random images of each class, a row each")


def training_curves(histories: dict[str, dict[str, list[float]]]):
    """Loss and accuracy per epoch, train (solid) vs validation (dashed), one colour per repeat (by label)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for index, (label, history) in enumerate(histories.items()):
        colour = f"C{index % 10}"
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            epochs = np.arange(1, len(history.get(metric, [])) + 1)
            ax.plot(epochs, history.get(metric, []), color=colour, marker="o", markersize=3, label=f"{label} train")
            if f"val_{metric}" in history:
                validation = history[f"val_{metric}"]
                ax.plot(
                    epochs,
                    validation,
                    color=colour,
                    linestyle="--",
                    marker="s",
                    markersize=3,
                    label=f"{label} validation",
                )
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set(xlabel="epoch", ylabel=metric)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    epochs = max((len(history.get("loss", [])) for history in histories.values()), default=0)
    return described(
        fig,
        f"Training curves: loss and accuracy per epoch ({epochs}) of {len(histories)} trainings, train solid, "
        "validation dashed",
    )


def spread(results: dict, *, metric: str = "f1", ax=None):
    """Validation `metric` of every repeat per model (dots; red = collapsed) with the mean (bar), from
    `ModelResult`s by name: how much of a model's score is its seed."""
    fig, ax = _axes(ax, figsize=(max(4.0, 1.3 * len(results)), 3.2))
    for position, result in enumerate(results.values()):
        values = [getattr(repeat.validation, metric) for repeat in result.repeats]
        colours = ["tab:red" if repeat.collapsed else "tab:blue" for repeat in result.repeats]
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(position + np.asarray(offsets), values, c=colours, s=22, zorder=3)
        ax.hlines(np.mean(values), position - 0.3, position + 0.3, color="black", linewidth=2, zorder=2)
    ax.set_xticks(range(len(results)), list(results), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"validation {metric}")
    ax.set_ylim(min(0.3, ax.get_ylim()[0]), 1.02)
    ax.set_title("Spread over seeds (bar: mean; red: collapsed)", fontsize=9)
    fig.tight_layout()
    return described(
        fig, f"Spread over seeds: validation {metric} of every repeat of {', '.join(results)}, with the mean"
    )


def confusion_heatmap(matrix: np.ndarray, *, title: str = "", ax=None):
    """Annotated heatmap of a 2x2 confusion matrix (rows true, columns predicted)."""
    fig, ax = _axes(ax, figsize=(4, 3.4))
    sns.heatmap(
        matrix, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, ax=ax
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    (bare_bare, bare_helmet), (helmet_bare, helmet_helmet) = np.asarray(matrix).tolist()
    return described(
        fig,
        f"Confusion matrix{f' ({title})' if title else ''}: of {bare_bare + bare_helmet} bare heads {bare_bare} "
        f"called bare and {bare_helmet} called helmet; of {helmet_bare + helmet_helmet} helmets {helmet_helmet} "
        f"called helmet and {helmet_bare} called bare",
    )


def prediction_grid(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    n: int = 12,
    seed: int = 0,
):
    """Random images titled with true label, predicted label and P(helmet); wrong predictions in red."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(n, len(images)), replace=False)
    columns = 6
    rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), chosen, strict=False):
        predicted = int(probabilities[index] >= threshold)
        ax.imshow(images[index])
        ax.set_title(
            f"true {CLASS_NAMES[labels[index]]}\npred {CLASS_NAMES[predicted]} ({probabilities[index]:.2f})",
            fontsize=8,
            color="black" if predicted == labels[index] else "red",
        )
    wrong = sum(int(probabilities[index] >= threshold) != labels[index] for index in chosen)
    return described(
        _photos(fig),
        f"Predictions on {len(chosen)} random images: true and predicted class with P(helmet), {wrong} mistakes in red",
    )


def statistics_by_class(statistics):
    """Box plots of brightness, contrast and sharpness per class (a table from `eda.image_statistics`)."""
    columns = ["brightness", "contrast", "sharpness"]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.5))
    for ax, column in zip(axes, columns, strict=True):
        sns.boxplot(data=statistics, x="class", y=column, hue="class", order=CLASS_NAMES, ax=ax)
        ax.set_xlabel("")
    fig.tight_layout()
    return described(fig, "Image statistics by class: box plots of brightness, contrast and sharpness per class")


def roc_pr_curves(curves_by_model: dict):
    """ROC and precision-recall curves of several models (`uncertainty.Curves` by name), areas in the legend."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, result in curves_by_model.items():
        roc_ax.plot(result.fpr, result.tpr, label=f"{name} (AUC {result.roc_auc:.3f})")
        pr_ax.plot(result.recall, result.precision, label=f"{name} (AP {result.average_precision:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_ax.set(xlabel="false positive rate (bare heads called helmets)", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall (helmets)", ylabel="precision (helmets)", title="Precision-recall")
    roc_ax.legend(fontsize=8)
    pr_ax.legend(fontsize=8)
    fig.tight_layout()
    areas = ", ".join(f"{name} {result.roc_auc:.3f}" for name, result in curves_by_model.items())
    return described(fig, f"ROC and precision-recall curves per model; ROC AUC: {areas}")


def calibration(y_true: np.ndarray, probabilities: np.ndarray, reliability: dict, *, title: str = ""):
    """Reliability diagram (from `uncertainty.reliability`) and histogram of P(helmet) by true class."""
    fig, (diagram, histogram) = plt.subplots(1, 2, figsize=(11, 4))
    diagram.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    diagram.plot(reliability["predicted"], reliability["observed"], marker="o", label=f"ECE {reliability['ece']:.3f}")
    diagram.set(xlabel="mean predicted P(helmet)", ylabel="observed share of helmets", title=f"Reliability {title}")
    diagram.legend()
    for label in (0, 1):
        histogram.hist(
            np.asarray(probabilities)[np.asarray(y_true) == label],
            bins=20,
            range=(0, 1),
            alpha=0.6,
            label=CLASS_NAMES[label],
        )
    histogram.set(xlabel="P(helmet)", ylabel="images", title="Predicted probabilities by true class")
    histogram.legend()
    fig.tight_layout()
    return described(
        fig,
        f"Reliability {title}: predicted P(helmet) against the observed share of helmets (expected calibration "
        f"error {reliability['ece']:.3f}), and histograms of P(helmet) per true class",
    )


def image_pairs(images: np.ndarray, pairs, *, title_columns=("parts", "distance")):
    """Pairs of images side by side (a table with `first` and `second` row indices), one pair per column, the
    pair's caption under it."""
    count = max(len(pairs), 1)
    fig, axes = plt.subplots(2, count, figsize=(2.2 * count, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for column, pair in enumerate(pairs.itertuples()):
        for row, index in enumerate((pair.first, pair.second)):
            axes[row][column].imshow(images[index])
            axes[row][column].set_title(f"#{index}", fontsize=8)
        caption = "\n".join(f"{name} {_number(getattr(pair, name))}" for name in title_columns)
        axes[1][column].text(
            0.5, -0.08, caption, transform=axes[1][column].transAxes, ha="center", va="top", fontsize=8
        )
    return described(
        _photos(fig), f"{len(pairs)} pairs of images, one above the other, with their {', '.join(title_columns)}"
    )


def _number(value) -> str:
    """A caption value: floats with 3 decimals ("0.963", not "0.9629999995231628"), the rest as they are."""
    return f"{value:.3f}" if isinstance(value, float | np.floating) else str(value)


def heat_map_grid(images: np.ndarray, maps: np.ndarray, titles: list[str], *, columns: int = 4):
    """Images with their Grad-CAM maps laid over them (jet colour map, half transparent)."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, heat, title in zip(axes.ravel(), images, maps, titles, strict=False):
        ax.imshow(image)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    return described(_photos(fig), f"Grad-CAM: {len(images)} images with the evidence the model used in red")


def source_photos(images: np.ndarray, examples):
    """Source photos with their head boxes (green: helmet, red: bare head) and crop windows (white), each beside
    the crops the data holds for it: one row per photo of `eda.source_photo_examples`."""
    import cv2

    rows = max(len(examples), 1)
    crops = max((len(example.rows) for example in examples), default=1)
    fig, axes = plt.subplots(
        rows, 1 + crops, figsize=(4.0 + 1.6 * crops, 2.6 * rows), squeeze=False, width_ratios=[2.5] + [1] * crops
    )
    for ax in axes.ravel():
        ax.axis("off")
    for row, example in enumerate(examples):
        photo = example.photo.copy()
        thickness = max(1, round(max(photo.shape[:2]) / 300))
        for item in example.rows.itertuples():
            colour = (0, 170, 0) if item.Label == 1 else (230, 0, 0)
            cv2.rectangle(
                photo, (round(item.xmin), round(item.ymin)), (round(item.xmax), round(item.ymax)), colour, thickness
            )
            corner = (int(item.window_left), int(item.window_top))
            far = (corner[0] + int(item.window_side), corner[1] + int(item.window_side))
            cv2.rectangle(photo, corner, far, (255, 255, 255), 1)
        axes[row][0].imshow(photo)
        axes[row][0].set_title(example.name, fontsize=8, loc="left")
        for column, item in enumerate(example.rows.itertuples(), start=1):
            axes[row][column].imshow(images[int(item.row)])
            axes[row][column].set_title(f"#{int(item.row)} {CLASS_NAMES[int(item.Label)]}", fontsize=8)
    return described(
        _photos(fig),
        f"{len(examples)} source photos with their head boxes (green helmet, red bare head) and crop "
        "windows (white), each beside its crops",
    )
