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
# # Helmet study model report
#
# **Author:** helmetlib · **Created:** 2026-11-29 · **Last modified:** 2026-12-06
#
# **Description:** trains one model several times with different seeds (the model and the number of repeats are
# named in the conclusion), restarting a training that collapses, checks the health of every repeat (dead units,
# identical outputs), deploys the average of the repeats unless validation shows it clearly worse, and saves it
# with its numbers for the comparison.

# %% tags=["parameters"]
RUN_DIR: str = "reports/interactive"  # run folder; relative paths resolve against the repository
MODEL_NAME: str = "cnn"  # cnn, vgg16_linear, vgg16_mlp, vgg16_mlp_aug, vgg16_gap or vgg16_multiscale
DATA_DIR: str = ""  # folder with images_proj.npy and Labels_proj.csv; empty: the synthetic demo set
DEMO_SIZE: int = 160  # images in the synthetic demo set
IMAGE_SIZE: int = 0  # resize images to N x N pixels; 0 keeps 200 x 200
SPLIT: str = "random"  # random (the study's stratified split) or grouped (no group on two sides)
SPLIT_SEED: int = 42  # random state of the split (the study's 42)
GROUPS_CSV: str = ""  # CSV naming each image's group, e.g. provenance.csv; empty: none
GROUP_COLUMN: str = "path"  # the group column of GROUPS_CSV
EPOCHS: int = 20  # training epochs (the study's 20)
BATCH_SIZE: int = 0  # 0: the study's 128, or 16 on the demo set (128 would be one step per epoch there)
SEED: int = 812  # seed of the first repeat; repeat i uses SEED + i
REPEATS: int = 0  # trainings with different seeds; 0: 3 on real data, 1 on the demo set
RESPLIT: bool = False  # True: each repeat on another split (random state SPLIT_SEED + i)
MAX_RESTARTS: int = 10  # restarts with another seed after a collapse (constant output; each costs ~1 epoch)
WEIGHTS: str = "imagenet"  # VGG16 weights: imagenet, none or a weights file
THRESHOLD: float = 0.5  # decision threshold of the reported metrics (the study's 0.5)
FAITHFUL: bool = False  # True: the study's computation (backbone every epoch, augmentation on the fly, CNN start)
AUGMENTED_VIEWS: int = 2  # fast mode of the augmented model: pre-drawn augmented views per training image
CACHE_DIR: str = "reports/.cache"  # backbone features and the backbone store, shared across runs

# %%
from IPython.display import Markdown, display

from helmetlib import confusion
from helmetlib.evaluation.metrics import per_class_table, performance_table
from helmetlib.reports import plots
from helmetlib.reports.narrative import architecture_table, model_conclusion, repeats_table, training_notes
from helmetlib.reports.notebook import start
from helmetlib.reports.pages import config_banners, in_notebook
from helmetlib.reports.pipeline import train_and_save

run = start(globals())
dataset = run.dataset()
outcome = train_and_save(run, run.model_name, dataset)
result, parts = outcome.result, outcome.parts

# %% [markdown]
# ## Conclusion

# %%
display(in_notebook(config_banners(run.config, uses_backbone=result.weights is not None)))
display(Markdown(model_conclusion(result)))

# %% [markdown]
# ## Spread over seeds and health
# One number from one seed is not a result: each dot is a training with another seed (red: collapsed). The table
# gives each repeat's dead ReLU units on training images (per class) and the share of training images that get one
# identical output: a unit dead for a whole class leaves that class a single constant answer.

# %%
figure = plots.spread({result.name: result})
repeats_table(result)

# %% [markdown]
# ## Training curves
# Loss and accuracy per epoch of every repeat (dashed: validation). vgg16_multiscale is fitted in closed form (no
# epochs).

# %%
histories = {f"seed {trained.seed}": trained.history for trained in outcome.repeats if trained.history}
if histories:
    figure = plots.training_curves(histories)
else:
    display(Markdown("Fitted by L-BFGS on the standardised features: no epochs to show."))

# %% [markdown]
# ## Performance of the deployed model on train and validation
# Accuracy and weighted recall / precision / F1 as in the study: its threshold (0.5 unless the run set another) on
# the model's own output. Recall on bare heads is the share of safety violations the model catches.

# %%
display(performance_table({"train": result.train, "validation": result.validation}).round(3))
per_class_table(result.validation).round(3)

# %%
for part in ("train", "validation"):
    labels = dataset.labels[getattr(parts, part)]
    matrix = confusion(labels, outcome.deployed.probabilities[part], threshold=run.config.threshold)
    figure = plots.confusion_heatmap(matrix, title=part)

# %% [markdown]
# ## Predictions on validation images
# True label, predicted label and P(helmet) as `helmet-predict` answers it for this model (calibrated on validation,
# decided at its card's threshold); mistakes in red.

# %%
figure = plots.prediction_grid(
    dataset.images[parts.validation],
    dataset.labels[parts.validation],
    outcome.answered("validation"),
    threshold=outcome.threshold.value,
)

# %% [markdown]
# ## How it was trained

# %%
display(Markdown(training_notes(result)))

# %% [markdown]
# ## Architecture

# %%
architecture_table(outcome.deployed.model)
