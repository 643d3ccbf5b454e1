"""helmetlib: train, compare and audit helmet / no-helmet image classifiers (label 1 = helmet worn).

Public names are imported on first use, so that `import helmetlib` (and the report runner) does not load
TensorFlow until a model is needed.
"""

from importlib import import_module

_EXPORTS = {
    "cards": ["ModelCard", "ModelError"],
    "data": ["CLASS_NAMES", "Dataset", "DatasetError", "load_dataset", "make_demo_dataset", "write_dataset"],
    "metrics": ["Scores", "confusion", "is_collapsed", "performance", "performance_table"],
    "importer": ["import_photos"],
    "inference": ["load_model", "predict", "predict_photos", "export_tflite"],
    "models": ["augmentation", "build_model"],
    "preprocess": ["normalize", "to_grayscale", "to_rgb"],
    "runs": ["ModelResult", "RunConfig", "RunFolder", "RunRecord", "Selection"],
    "specs": ["MODEL_NAMES"],
    "splits": ["Split", "grouped_split", "split"],
    "train": ["TrainedModel", "deploy", "predict_proba", "train_model", "train_repeats"],
    "weights": ["WeightsChoice", "resolve_weights"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(import_module(f"helmetlib.{_MODULE_OF[name]}"), name)
    try:
        return import_module(f"helmetlib.{name}")  # submodules, e.g. helmetlib.plots
    except ModuleNotFoundError:
        raise AttributeError(f"module 'helmetlib' has no attribute {name!r}") from None


def __dir__():
    return __all__
