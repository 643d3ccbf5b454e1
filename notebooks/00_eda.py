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
# # Helmet study: the data and its leakage audit
#
# **Author:** helmetlib · **Created:** 2026-11-29 · **Last modified:** 2026-12-06
#
# **Description:** is the dataset valid, balanced and free of leakage across the split, and what could a model
# learn instead of the helmet? Run by `helmet-reports`; runs unchanged in JupyterLab and under papermill.

# %% tags=["parameters"]
RUN_DIR: str = "reports/interactive"  # run folder; relative paths resolve against the repository
DATA_DIR: str = ""  # folder with images_proj.npy and Labels_proj.csv; empty: the synthetic demo set
DEMO_SIZE: int = 160  # images in the synthetic demo set
IMAGE_SIZE: int = 0  # resize images to N x N pixels; 0 keeps 200 x 200
SPLIT: str = "random"  # random (the study's stratified split) or grouped (no group on two sides)
SPLIT_SEED: int = 42  # random state of the split (the study's 42)
GROUPS_CSV: str = ""  # CSV naming each image's group, e.g. provenance.csv; empty: none
GROUP_COLUMN: str = "path"  # the group column of GROUPS_CSV
WEIGHTS: str = "imagenet"  # VGG16 weights for the look-alike audit: imagenet, none or a weights file
CACHE_DIR: str = "reports/.cache"  # backbone features, shared with the model notebooks
EPOCHS: int = 20  # epochs of the reference model trained on the random and the grouped split
BATCH_SIZE: int = 0  # the reference model's batch size; 0: 128, or 16 on the demo set
SEED: int = 812  # the reference model's training seed

# %%
from IPython.display import Markdown, display

from helmetlib.data.audit import leakage_summary
from helmetlib.reports import plots
from helmetlib.reports.eda import source_photo_examples, split_description, split_table, statistics_table
from helmetlib.reports.narrative import data_conclusion
from helmetlib.reports.notebook import start
from helmetlib.reports.pages import config_banners, in_notebook
from helmetlib.reports.pipeline import audit_data, look_alike_features

run = start(globals())
dataset = run.dataset()
parts = run.split(dataset)
audit = audit_data(run, dataset, parts, look_alike_features(run, dataset))

# %% [markdown]
# ## Conclusion

# %%
display(in_notebook(config_banners(run.config)))
display(Markdown(data_conclusion(dataset, parts, audit, run.config.data_dir or "synthetic demo")))

# %% [markdown]
# ## Class balance
# Label 1 = helmet worn, label 0 = bare head (the safety violation).

# %%
figure = plots.class_balance(dataset.labels)

# %% [markdown]
# ## Examples per class, in colour and in grayscale

# %%
figure = plots.sample_grid(dataset.images, dataset.labels, per_class=6)

# %%
figure = plots.sample_grid(dataset.images, dataset.labels, per_class=6, grayscale=True)

# %% [markdown]
# ## Image statistics by class
# Brightness is the mean grayscale value, contrast its standard deviation, sharpness the variance of the Laplacian
# (blurry crops score low). A difference between the classes is a shortcut a model may learn. The rule behind each
# verdict: the classes are alike when the 95 % interval of the standardised difference (in pooled standard
# deviations) includes 0 or the difference is under 0.2; they differ from 0.5 on, and differ a little between.

# %%
display(statistics_table(audit.differences))
figure = plots.statistics_by_class(audit.statistics)

# %% [markdown]
# ## Where the crops come from
# For a data folder made by `helmet-import` whose photos are still reachable: a few source photos with their head
# boxes (green helmet, red bare head) and the square windows the crops were cut from (white), beside the crops.

# %%
examples = source_photo_examples(run.config.data_dir)
if examples:
    figure = plots.source_photos(dataset.images, examples)
else:
    display(Markdown("Not an imported data folder, or its source photos are not reachable from here."))

# %% [markdown]
# ## The split
# Stratified 70 / 15 / 15 as in the study (random state 42 unless the run set another), or by group.

# %%
config = run.config
display(Markdown(split_description(config.split, config.split_seed, config.groups_csv, config.group_column)))
split_table(parts, dataset.labels)

# %% [markdown]
# ## Duplicate images across the split
# Exact copies and near duplicates (shifted, re-encoded or rescaled: perceptual hashes within 10 of 64 bits, confirmed
# on the fine detail of the pixels) that land in two parts let a model be tested on what it trained on.

# %%
display(Markdown(f"**Verdict:** {audit.record.verdict}"))
if len(audit.duplicates):
    display(leakage_summary(audit.duplicates))
else:
    display(Markdown("No near-duplicate pairs, within or across parts."))

# %% [markdown]
# The most similar pairs that straddle the split, duplicates or not (hash distance in bits):

# %%
figure = plots.image_pairs(dataset.images, audit.closest)

# %% [markdown]
# ### Look-alikes in the backbone's eyes
# Pixel hashes miss crops of the same scene or person. Cosine similarity of the frozen VGG16's standardised features
# (what vgg16_linear and vgg16_mlp train on, computed once and cached) finds pairs across the split the backbone
# sees as alike.

# %%
if audit.look_alikes is not None and len(audit.look_alikes):
    display(Markdown(f"**{len(audit.look_alikes)} cross-split look-alike pairs**, the closest:"))
    figure = plots.image_pairs(dataset.images, audit.look_alikes.head(4), title_columns=("parts", "similarity"))
else:
    display(Markdown("No cross-split pair looks alike to the backbone."))

# %% [markdown]
# ## Related images across the split
# Crops cut from one photo share background, light and people. With a group column (the photos of an imported folder,
# or a groups file) this counts the groups the random split puts on two sides, shows a grouped split that keeps
# every group on one side, and compares a reference model's validation accuracy on both. The rule behind the
# verdict: the random split is optimistic when the 95 % interval of the difference (random minus grouped) lies
# above 0, not when it lies below, and undecided otherwise.

# %%
if audit.split_check is not None:
    check = audit.split_check
    display(Markdown(f"**{check.groups} groups** for {len(dataset)} images. Random split:"))
    display(audit.shared)
    display(Markdown("Grouped split (no group on two sides):"))
    display(split_table(audit.grouped, dataset.labels))
    display(Markdown(f"Validation scores of {check.model} ({run.config.epochs} epochs) trained on each split: "))
    display(check.table())
    display(Markdown(f"**Verdict:** {check.verdict}."))
else:
    display(Markdown("No group column given: related images are not checked here."))
