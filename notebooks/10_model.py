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
# # Helmet study: one model
#
# **Description:** trains one of the study's models (parameter `MODEL_NAME`) on the train part, evaluates it on
# train and validation, and saves the model and its numbers for the comparison. One template, run once per model.

# %% tags=["parameters"]
DATA_DIR = ""  # folder with images_proj.npy and Labels_proj.csv, or "" for the synthetic demo set
RUN_DIR = "../reports/interactive"
MODEL_NAME = "cnn"  # cnn | vgg16_linear | vgg16_mlp | vgg16_mlp_aug | vgg16_gap
EPOCHS = 20
BATCH_SIZE = 128
SEED = 812
SPLIT_SEED = 42
GROUPS_CSV = ""  # CSV with one row per image naming its group (e.g. provenance.csv), or "" for none
GROUP_COLUMN = "path"
GROUPED_SPLIT = False  # True: split by group (GROUPS_CSV, else near-duplicate clusters), not at random
WEIGHTS = "imagenet"  # imagenet | none | path to a VGG16 no-top weights file
THRESHOLD = 0.5
IMAGE_SIZE = 0  # resize to N x N pixels for the models, 0 keeps 200 x 200
FAITHFUL = False  # True: the study's computation (backbone every epoch, augmentation on the fly)
AUGMENTED_VIEWS = 2  # fast mode of the augmented model: pre-drawn augmented views per training image
CACHE_DIR = "../reports/.cache/features"

# %%
from IPython.display import Markdown, display

from helmetlib import confusion, plots, resolve_weights, train_model
from helmetlib.metrics import per_class_table, performance_table
from helmetlib.specs import get_spec
from helmetlib.study import model_results, observation, save_model_results, study_dataset, study_split

# %% [markdown]
# ## Data, split and weights

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
spec = get_spec(MODEL_NAME)
weights = resolve_weights(WEIGHTS) if spec.uses_backbone else None
if weights is not None and weights.is_fallback:
    display(Markdown(weights.banner_html()))
display(
    Markdown(
        f"**{MODEL_NAME}**: {spec.description}; train on {len(parts.train)} images, validate on "
        f"{len(parts.validation)}; weights: {weights.used if weights else 'n/a'}."
    )
)

# %% [markdown]
# ## Training

# %%
trained = train_model(
    MODEL_NAME,
    dataset,
    parts,
    weights=weights,
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    seed=SEED,
    faithful=FAITHFUL,
    augmented_views=AUGMENTED_VIEWS,
    cache_dir=CACHE_DIR,
)
display(Markdown("\n".join(f"- {note}" for note in [f"mode: {trained.mode}", *trained.notes])))

# %% [markdown]
# ## Architecture

# %%
trained.model.summary(expand_nested=True)

# %% [markdown]
# ## Training curves

# %%
figure = plots.training_curves(trained.history)
# %% [markdown]
# ## Performance on train and validation, at the decision threshold
# Accuracy and weighted recall / precision / F1 as in the study, then per class: recall on bare heads is the
# share of safety violations the model catches.

# %%
results = model_results(trained, dataset, parts, threshold=THRESHOLD)
performance_table({part: results[part] for part in ("train", "validation")}).round(3)

# %%
per_class_table(results["validation"]).round(3)

# %%
for part in ("train", "validation"):
    indices = getattr(parts, part)
    plots.confusion_heatmap(
        confusion(dataset.labels[indices], trained.probabilities[part], threshold=THRESHOLD), title=part
    )

# %% [markdown]
# ## Predictions on validation images
# True label, predicted label and P(helmet); mistakes in red.

# %%
figure = plots.prediction_grid(
    dataset.images[parts.validation],
    dataset.labels[parts.validation],
    trained.probabilities["validation"],
    threshold=THRESHOLD,
)
# %% [markdown]
# ## Observation

# %%
display(Markdown(observation(results)))

# %%
metrics_file = save_model_results(trained, results, RUN_DIR)
