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
# # Helmet study: exploring the data
#
# **Description:** what the dataset holds, whether it is valid, how the classes look and how it is split.
# Run by `helmet-reports`; runs unchanged in JupyterLab on the built-in synthetic demo set.

# %% tags=["parameters"]
DATA_DIR = ""  # folder with images_proj.npy and Labels_proj.csv, or "" for the synthetic demo set
RUN_DIR = "../reports/interactive"
IMAGE_SIZE = 0  # resize to N x N pixels for the models, 0 keeps 200 x 200
SPLIT_SEED = 42
SAMPLES_PER_CLASS = 6
GROUPS_CSV = ""  # CSV with one row per image naming its group (e.g. provenance.csv), or "" for none
GROUP_COLUMN = "path"
GROUPED_SPLIT = False  # True: split by group (GROUPS_CSV, else near-duplicate clusters), not at random
WEIGHTS = "imagenet"  # VGG16 weights for the embedding audit: imagenet, none or a weights file
CACHE_DIR = "../reports/.cache/features"  # shared with the model notebooks: the features are computed once
REFERENCE_MODEL = "vgg16_linear"  # trained on the random and the grouped split to show the difference
REFERENCE_EPOCHS = 20

# %%
from IPython.display import Markdown, display

from helmetlib import plots, resolve_weights, split, to_grayscale
from helmetlib.audit import (
    EMBEDDING_SIMILARITY,
    closest_cross_split_pairs,
    embedding_neighbours,
    leakage_summary,
    near_duplicate_pairs,
    verdict,
)
from helmetlib.eda import image_statistics, split_table
from helmetlib.features import FeatureCache, cached_features
from helmetlib.models import vgg16_backbone
from helmetlib.splits import grouped_split, read_groups, shared_groups
from helmetlib.study import split_score_change, study_dataset, study_split

# %% [markdown]
# ## The dataset and its validation
# `study_dataset` validates the files (shape, dtype, labels, counts) and raises a `DatasetError` naming the file
# and the problem; the images are converted from the files' BGR to RGB once, here.

# %%
dataset = study_dataset(DATA_DIR, image_size=IMAGE_SIZE)
source = dataset.images_path or "synthetic demo set (helmetlib.make_demo_dataset)"
display(
    Markdown(
        f"Validation passed: **{len(dataset)} images** of {dataset.images.shape[1]}x{dataset.images.shape[2]} "
        f"RGB uint8 from `{source}`, content hash `{dataset.content_hash}`."
    )
)

# %% [markdown]
# ## Class balance
# Label 1 = helmet worn, label 0 = bare head (the safety violation).

# %%
figure = plots.class_balance(dataset.labels)
# %% [markdown]
# ## Examples per class, in colour and in grayscale

# %%
figure = plots.sample_grid(dataset.images, dataset.labels, per_class=SAMPLES_PER_CLASS)
# %%
grayscale = to_grayscale(dataset.images)
figure = plots.sample_grid(grayscale, dataset.labels, per_class=SAMPLES_PER_CLASS, grayscale=True)
# %% [markdown]
# ## Image statistics by class
# Brightness is the mean grayscale value; sharpness the variance of the Laplacian (blurry crops score low).
# A large difference between the classes is a shortcut a model may learn instead of the helmet.

# %%
statistics = image_statistics(dataset.images, dataset.labels)
display(statistics.groupby("class")[["brightness", "contrast", "sharpness"]].describe().T.round(1))

# %%
figure = plots.statistics_by_class(statistics)
# %% [markdown]
# ## The split
# Stratified 70 / 15 / 15 with `random_state` = SPLIT_SEED, as in the study (by group when GROUPED_SPLIT).
# The test part is looked at once,
# in the comparison notebook, for the selected model only.

# %%
parts = study_split(
    dataset.labels,
    groups_csv=GROUPS_CSV,
    group_column=GROUP_COLUMN,
    grouped=GROUPED_SPLIT,
    images=dataset.images,
    random_state=SPLIT_SEED,
)
split_table(parts, dataset.labels)

# %% [markdown]
# ## Leakage audit: duplicate images across the split
# Exact copies and near duplicates (shifted, re-encoded or rescaled copies: DCT perceptual hashes within a few of
# 64 bits) that land in two parts let a model be tested on what it trained on.

# %%
duplicates = near_duplicate_pairs(dataset.images, parts)
display(Markdown(f"**Verdict:** {verdict(duplicates)}"))
leakage_summary(duplicates)

# %% [markdown]
# The most similar pairs that straddle the split, duplicates or not (distance in hash bits):

# %%
figure = plots.image_pairs(dataset.images, closest_cross_split_pairs(dataset.images, parts, n=4))

# %% [markdown]
# ### Look-alikes in the backbone's eyes
# Pixel hashes miss crops of the same scene or person. Cosine similarity of the frozen VGG16's standardised features
# (the features models 2 and 3 train on, computed once and cached) finds pairs across the split that the
# backbone sees as near-identical.

# %%
weights = resolve_weights(WEIGHTS)
if weights.is_fallback:
    display(Markdown(f"**{weights.banner()}** Similarities below come from a random network."))
backbone = vgg16_backbone(weights, dataset.images.shape[1:])
features = cached_features(dataset.images, dataset.content_hash, backbone, FeatureCache(CACHE_DIR))
look_alikes = embedding_neighbours(features, parts)
display(
    Markdown(
        f"**{len(look_alikes)} cross-split pairs** with cosine similarity ≥ {EMBEDDING_SIMILARITY} "
        f"({look_alikes['parts'].value_counts().to_dict() if len(look_alikes) else 'none'})."
    )
)

# %%
if len(look_alikes):
    figure = plots.image_pairs(dataset.images, look_alikes.head(4), title_columns=("parts", "similarity"))

# %% [markdown]
# ## Related images across the split
# Crops cut from one photo share background, light and people. When a group column is given (GROUPS_CSV), this
# counts the groups that the random split puts on two sides, and shows a grouped split that keeps every group on
# one side (stratified as far as groups allow), and how a reference model's validation scores change when groups
# no longer straddle the split. Scores measured on a split with shared groups are optimistic.

# %%
if GROUPS_CSV:
    groups = read_groups(GROUPS_CSV, GROUP_COLUMN)
    display(Markdown(f"**{len(set(groups))} groups** for {len(groups)} images. Random split:"))
    display(shared_groups(split(dataset.labels, random_state=SPLIT_SEED), groups))
    grouped = grouped_split(dataset.labels, groups, random_state=SPLIT_SEED)
    display(Markdown("Grouped split (no group on two sides):"))
    display(split_table(grouped, dataset.labels))
    display(Markdown(f"Validation scores of {REFERENCE_MODEL} ({REFERENCE_EPOCHS} epochs) trained on each split:"))
    random_parts = split(dataset.labels, random_state=SPLIT_SEED)
    display(
        split_score_change(
            dataset,
            {"random split": random_parts, "grouped split": grouped},
            model_name=REFERENCE_MODEL,
            weights=weights,
            epochs=REFERENCE_EPOCHS,
            cache_dir=CACHE_DIR,
        ).round(3)
    )
else:
    display(Markdown("No group column given (GROUPS_CSV is empty): related images are not checked here."))
