# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Helmet study: comparison and selection
#
# **Description:** the study's train / validation / difference tables across models, the selection of one model
# on validation, and the test-set evaluation of the selected model only.

# %% tags=["parameters"]
DATA_DIR = ""  # folder with images_proj.npy and Labels_proj.csv, or "" for the synthetic demo set
RUN_DIR = "../reports/interactive"
MODELS = "cnn,vgg16_linear,vgg16_mlp,vgg16_mlp_aug,vgg16_gap"
SPLIT_SEED = 42
GROUPS_CSV = ""  # CSV with one row per image naming its group (e.g. provenance.csv), or "" for none
GROUP_COLUMN = "path"
GROUPED_SPLIT = False  # True: split by group (GROUPS_CSV, else near-duplicate clusters), not at random
THRESHOLD = 0.5
IMAGE_SIZE = 0
TARGET_BARE_HEAD_RECALL = 0.0  # above 0: choose the threshold that catches this share of bare heads, else max F1
BOOTSTRAP_RESAMPLES = 2000
EXPORT_TFLITE = True  # write the selected model as float32 and quantised TensorFlow Lite files

# %%
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from helmetlib import confusion, export_tflite, normalize, performance, plots, predict_proba
from helmetlib.explain import explanation_examples, grad_cam
from helmetlib.inference import card_path
from helmetlib.metrics import per_class_table
from helmetlib.study import (
    MODELS_FOLDER,
    SELECTION_RULE,
    comparison_tables,
    load_model_results,
    load_probabilities,
    runner_up,
    save_selection,
    select_model,
    study_dataset,
    study_split,
    training_table,
)
from helmetlib.uncertainty import bootstrap_intervals, brier_score, choose_threshold, curves, reliability
from helmetlib.weights import WeightsChoice

# %% [markdown]
# ## The models' numbers

# %%
results = load_model_results(RUN_DIR, MODELS.split(","))
tables = comparison_tables(results)
for name, result in results.items():
    if result["weights"] and result["weights"]["fallback_reason"]:
        display(Markdown(f"**{name}**: " + WeightsChoice(**result["weights"]).banner_html()))

# %% [markdown]
# ### How each model was trained
# `fast`: head trained on backbone features computed once (model 4 on pre-drawn augmented views);
# `faithful`: the study's computation; `direct`: the CNN, trained on images.

# %%
training_table(results)

# %% [markdown]
# ### Train

# %%
tables["train"].round(3)

# %% [markdown]
# ### Validation

# %%
tables["validation"].round(3)

# %% [markdown]
# ### Train minus validation (a large positive gap means overfitting)

# %%
tables["difference"].round(3)

# %% [markdown]
# ### ROC and precision-recall on validation

# %%
dataset = study_dataset(DATA_DIR, image_size=IMAGE_SIZE)
parts = study_split(
    dataset.labels,
    groups_csv=GROUPS_CSV,
    group_column=GROUP_COLUMN,
    grouped=GROUPED_SPLIT,
    images=dataset.images,
    random_state=SPLIT_SEED,
)
validation_labels = dataset.labels[parts.validation]
validation = {name: load_probabilities(RUN_DIR, name)["validation"] for name in results}
figure = plots.roc_pr_curves({name: curves(validation_labels, p) for name, p in validation.items()})

# %% [markdown]
# ### Where the models look (Grad-CAM on validation)
# For each model: its most confident correct predictions, then its most confident mistakes. Red is where the
# prediction's evidence lies: on the head, or on clothing and background?

# %%
validation_images = dataset.images[parts.validation]
for name in results:
    rows = explanation_examples(validation_labels, validation[name], threshold=THRESHOLD)
    saved = keras.saving.load_model(Path(RUN_DIR) / MODELS_FOLDER / f"{name}.keras", safe_mode=True)
    maps = grad_cam(saved, normalize(validation_images[rows], results[name]["normalization"]), threshold=THRESHOLD)
    titles = [
        f"{'OK' if (validation[name][r] >= THRESHOLD) == validation_labels[r] else 'WRONG'} "
        f"P(helmet) {validation[name][r]:.2f}"
        for r in rows
    ]
    display(Markdown(f"**{name}**"))
    figure = plots.heat_map_grid(validation_images[rows], maps, titles)
    plt.show()

# %% [markdown]
# ## Selection

# %%
selected = select_model(results)
second = runner_up(results, selected)
display(
    Markdown(
        f"Rule: {SELECTION_RULE}.\n\n**Selected model: {selected}** "
        f"(validation F1 {results[selected]['validation']['f1']:.3f})."
    )
)

# %% [markdown]
# ### Is the selected model really better than the runner-up? (validation, bootstrap 95 % intervals)
# Both models on the same resampled validation images; an interval that contains 0 means the validation set
# cannot tell them apart.

# %%
if second:
    versus = bootstrap_intervals(
        validation_labels,
        validation[selected],
        reference_probabilities=validation[second],
        threshold=THRESHOLD,
        n_resamples=BOOTSTRAP_RESAMPLES,
    )
    display(Markdown(f"{selected} minus {second}:"))
    display(pd.DataFrame({k: v for k, v in versus.items() if k.endswith("_difference")}).T.round(3))

# %% [markdown]
# ### Calibration and threshold of the selected model (validation)

# %%
calibration = reliability(validation_labels, validation[selected])
figure = plots.calibration(validation_labels, validation[selected], calibration, title=f"({selected}, validation)")
chosen_threshold = choose_threshold(
    validation_labels, validation[selected], target_bare_head_recall=TARGET_BARE_HEAD_RECALL or None
)
display(
    Markdown(
        f"Brier score {brier_score(validation_labels, validation[selected]):.3f}, expected calibration error "
        f"{calibration['ece']:.3f}. Threshold chosen on validation "
        f"({'bare-head recall ≥ ' + str(TARGET_BARE_HEAD_RECALL) if TARGET_BARE_HEAD_RECALL else 'max F1'}): "
        f"**{chosen_threshold:.3f}**."
    )
)

# %% [markdown]
# ## Test set: the selected model only
# The test part is evaluated once, here, with the saved image-to-probability model.

# %%
model_file = Path(RUN_DIR) / MODELS_FOLDER / f"{selected}.keras"
model = keras.saving.load_model(model_file, safe_mode=True)
test_probabilities = predict_proba(model, dataset.images[parts.test], normalization=results[selected]["normalization"])
test = performance(dataset.labels[parts.test], test_probabilities, threshold=THRESHOLD)
display(
    Markdown(
        f"**{selected} on test**: accuracy {test['accuracy']:.3f}, recall {test['recall']:.3f}, "
        f"precision {test['precision']:.3f}, F1 {test['f1']:.3f} ({test['n']} images)."
    )
)
per_class_table(test).round(3)

# %% [markdown]
# ### Test metrics with bootstrap 95 % intervals, at 0.5 and at the threshold chosen on validation
# With about 90 test images one image moves accuracy by about a point.

# %%
test_labels = dataset.labels[parts.test]
test_intervals = {
    threshold: bootstrap_intervals(
        test_labels, test_probabilities, threshold=threshold, n_resamples=BOOTSTRAP_RESAMPLES
    )
    for threshold in (THRESHOLD, chosen_threshold)
}
pd.concat({f"threshold {t:.3f}": pd.DataFrame(v).T for t, v in test_intervals.items()}).round(3)

# %%
figure = plots.confusion_heatmap(
    confusion(dataset.labels[parts.test], test_probabilities, threshold=THRESHOLD), title=f"{selected}, test"
)
# %% [markdown]
# ## Export for deployment
# The selected model as TensorFlow Lite, float32 and with int8-quantised weights, next to its `.keras` file;
# agreement is measured against the Keras model on the validation images.

# %%
export = export_tflite(model_file, dataset.images[parts.validation]) if EXPORT_TFLITE else None
pd.DataFrame(export).T if export else Markdown("Export skipped (EXPORT_TFLITE is False).")

# %%
evaluation = {
    "runner_up": second,
    "chosen_threshold": chosen_threshold,
    "validation_brier": brier_score(validation_labels, validation[selected]),
    "validation_ece": calibration["ece"],
    "validation_difference_to_runner_up": versus if second else None,
    "test_intervals": {f"{threshold:.4f}": intervals for threshold, intervals in test_intervals.items()},
}
selection_file = save_selection(RUN_DIR, selected, test, results, export, evaluation)

# %% [markdown]
# ## Model card of the selected model
# What `helmet-predict` reads to prepare images and apply the threshold.

# %%
display(Markdown(f"```json\n{card_path(model_file).read_text()}\n```"))
