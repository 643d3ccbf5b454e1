"""helmetlib: train, compare and audit helmet / no-helmet image classifiers (label 1 = helmet worn).

Public names are imported on first use, so that `import helmetlib` (and the report runner) does not load
TensorFlow until a model is needed.
"""

from importlib import import_module

_EXPORTS = {
    "deploy.cards": ["ModelCard", "ModelError"],
    "data.dataset": ["CLASS_NAMES", "Dataset", "DatasetError", "load_dataset", "make_demo_dataset", "write_dataset"],
    "evaluation.metrics": ["Scores", "confusion", "is_collapsed", "performance", "performance_table"],
    "data.importer": ["import_photos"],
    "deploy.predict": ["load_model", "predict", "predict_photos"],
    "deploy.export": ["export_tflite"],
    "models.builders": ["augmentation", "build_model"],
    "core.preprocess": ["normalize", "to_grayscale", "to_rgb"],
    "run.folder": ["ModelResult", "RunConfig", "RunFolder", "RunRecord", "Selection"],
    "core.specs": ["MODEL_NAMES"],
    "data.splits": ["Split", "grouped_split", "split"],
    "training.repeats": ["TrainedModel", "predict_proba", "train_model", "train_repeats"],
    "training.seed_ensemble": ["choose_seed_ensemble"],
    "core.weights": ["WeightsChoice", "resolve_weights"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(import_module(f"helmetlib.{_MODULE_OF[name]}"), name)
    try:
        return import_module(f"helmetlib.{name}")  # the floors, e.g. helmetlib.reports
    except ModuleNotFoundError:
        raise AttributeError(f"module 'helmetlib' has no attribute {name!r}") from None


def __dir__():
    return __all__
