"""helmetlib: train, compare and audit helmet / no-helmet image classifiers (label 1 = helmet worn)."""

from helmetlib.data import CLASS_NAMES, Dataset, DatasetError, load_dataset, make_demo_dataset, write_dataset
from helmetlib.metrics import confusion, performance, performance_table
from helmetlib.models import MODEL_NAMES, augmentation, build_model
from helmetlib.preprocess import normalize, to_grayscale, to_rgb
from helmetlib.split import Split, split
from helmetlib.train import TrainedModel, predict_proba, train_model
from helmetlib.weights import WeightsChoice, resolve_weights

__all__ = [
    "CLASS_NAMES",
    "MODEL_NAMES",
    "Dataset",
    "DatasetError",
    "Split",
    "TrainedModel",
    "WeightsChoice",
    "augmentation",
    "build_model",
    "confusion",
    "load_dataset",
    "make_demo_dataset",
    "normalize",
    "performance",
    "performance_table",
    "predict_proba",
    "resolve_weights",
    "split",
    "to_grayscale",
    "to_rgb",
    "train_model",
    "write_dataset",
]
