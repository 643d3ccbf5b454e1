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
#     display_name: Python 3 (helmetlib)
#     language: python
#     name: helmetlib
# ---

# %% [markdown]
# # Helmet study: comparison and decision
#
# **Author:** helmetlib · **Created:** 2026-11-29 · **Last modified:** 2026-12-06
#
# **Description:** which model to deploy (the best architecture, or its average with the runner-up when validation
# allows), how sure we are, at which threshold, and what to worry about; then the comparison on validation that
# decided it and the one look at the test set, for the deployed model only.

# %% tags=["parameters"]
RUN_DIR: str = "reports/interactive"  # run folder; relative paths resolve against the repository
DATA_DIR: str = ""  # folder with images_proj.npy and Labels_proj.csv; empty: the synthetic demo set
DEMO_SIZE: int = 160  # images in the synthetic demo set
IMAGE_SIZE: int = 0  # resize images to N x N pixels; 0 keeps 200 x 200
SPLIT: str = "random"  # random (the study's stratified split) or grouped (no group on two sides)
SPLIT_SEED: int = 42  # random state of the split (the study's 42)
GROUPS_CSV: str = ""  # CSV naming each image's group, e.g. provenance.csv; empty: none
GROUP_COLUMN: str = "path"  # the group column of GROUPS_CSV
MODELS: str = "cnn,vgg16_linear,vgg16_mlp,vgg16_mlp_aug,vgg16_gap,vgg16_multiscale"  # models to compare
EPOCHS: int = 20  # used only when no model has results in RUN_DIR yet (they are trained first)
BATCH_SIZE: int = 0  # likewise; 0: 128, or 16 on the demo set
SEED: int = 812  # likewise: seed of the first repeat
REPEATS: int = 0  # likewise; 0: 3 on real data, 1 on the demo set
WEIGHTS: str = "imagenet"  # likewise: VGG16 weights, imagenet, none or a weights file
CACHE_DIR: str = "reports/.cache"  # likewise: backbone features and the backbone store
THRESHOLD: float = 0.5  # decision threshold of the metrics and the selection (the study's 0.5)
THRESHOLD_RULE: str = ""  # to deploy: fixed, calibrated, max-f1, bare-head-recall; empty: calibrated (fixed: FAITHFUL)
TARGET_BARE_HEAD_RECALL: float = 0.9  # the share of bare heads to catch, for THRESHOLD_RULE bare_head_recall
CROSS_ENSEMBLE: str = "preferred"  # deploy the best two averaged: preferred (clearly better), unless-worse, off
BOOTSTRAP_RESAMPLES: int = 2000  # resamples of the bootstrap intervals
EXPORT_TFLITE: bool = True  # write the selected model as float32 and quantised TensorFlow Lite files

# %%
from IPython.display import Markdown, display

from helmetlib.evaluation.metrics import per_class_table
from helmetlib.evaluation.uncertainty import curves
from helmetlib.reports import plots
from helmetlib.reports.explain import explanation_grid
from helmetlib.reports.narrative import (
    calibration_summary,
    card_table,
    comparison_tables,
    interval_table,
    spread_table,
    training_table,
)
from helmetlib.reports.notebook import start
from helmetlib.reports.pages import decision_html, in_notebook
from helmetlib.reports.pipeline import compare_and_select

run = start(globals())
dataset = run.dataset()
comparison = compare_and_select(run, dataset)
results, selection = comparison.results, comparison.selection
selected = selection.selected_model

# %%
display(in_notebook(decision_html(run.config, results, selection, run.folder.read_audit())))
if comparison.trained_here:
    display(Markdown(f"No model had results in `RUN_DIR`: trained here first: {', '.join(comparison.trained_here)}."))

# %% [markdown]
# ## Spread over seeds
# Each model is deployed as the seed ensemble of its repeats unless validation shows that clearly worse; the dots
# show how much one seed alone can mislead.

# %%
figure = plots.spread(results)
spread_table(results)

# %% [markdown]
# ## The deployed models on validation
# The study's tables: train, validation, and train minus validation (a large positive gap means overfitting).

# %%
tables = comparison_tables(results)
display(Markdown("**Validation**"), tables["validation"])
display(Markdown("**Train**"), tables["train"])
display(Markdown("**Train minus validation**"), tables["difference"])

# %% [markdown]
# ### How each model was trained
# Trained on "cached backbone features": the head alone, on VGG16 features computed once (vgg16_mlp_aug on pre-drawn
# augmented views); "images through the frozen backbone": the study's computation, epoch by epoch; "images, end to
# end": the CNN.

# %%
training_table(results)

# %% [markdown]
# ### ROC and precision-recall on validation

# %%
labels = comparison.validation_labels
figure = plots.roc_pr_curves({name: curves(labels, p) for name, p in comparison.validation.items()})

# %% [markdown]
# ## Calibration and threshold of the deployed model (validation)
# The model's own output first; `helmet-predict`, `helmet-evaluate` and the card give P(helmet) after the
# calibration fitted on validation, and the threshold to deploy applies to that calibrated probability.

# %%
if selected:
    figure = plots.calibration(labels, comparison.deployed_validation, comparison.calibration, title=selection.deployed)
    display(Markdown(calibration_summary(selection)))

# %% [markdown]
# ## Test set: the deployed model only
# Scored once, with the saved model, as `helmet-predict` answers (95 % bootstrap intervals; with about 90 test images
# one image moves accuracy by about a point); the matrix counts the deployed decision behind the table's first
# column.

# %%
if selected:
    display(interval_table(selection))
    display(per_class_table(selection.test).round(3))
    figure = plots.confusion_heatmap(
        selection.test_confusion(), title=f"{selection.deployed}, test, threshold {selection.threshold.value:.3f}"
    )

# %% [markdown]
# ## Where the models look (Grad-CAM on validation)
# For each model its most confident correct predictions, then its most confident mistakes. Red is where the
# evidence lies: on the head, or on clothing and background?

# %%
for name in results:
    figure = explanation_grid(run, dataset, name, comparison)

# %% [markdown]
# ## Model card of the deployed model and its export
# What `helmet-predict` reads to prepare images and decide.

# %%
if selected:
    display(card_table(run.folder, selection.deployed))
