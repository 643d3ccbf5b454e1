"""The run's split, owned here: drawn by one function (`run_split`) that the runner and every notebook call, and
recorded once in the run folder (`split.npz`) under the key of what it was drawn from."""

from __future__ import annotations

from helmetlib.data.dataset import Dataset
from helmetlib.data.splits import Split, make_split
from helmetlib.run.config import RunConfig
from helmetlib.run.folder import RunFolder


def split_key(config: RunConfig, content_hash: str, random_state: int | None = None) -> str:
    """What a run's split is drawn from (kind, random state, groups, data): the key it is recorded under."""
    state = config.split_seed if random_state is None else random_state
    return "/".join(map(str, (config.split, state, config.groups_csv, config.group_column, content_hash)))


def run_split(config: RunConfig, dataset: Dataset, *, folder: RunFolder | None = None, repeat: int = 0) -> Split:
    """The run's split of `dataset` (with `RESPLIT`, the split of repeat `repeat`: another random state each).

    The run's own split (repeat 0, or every repeat without `RESPLIT`) is read from `folder`'s record when one
    was drawn from the same data and settings, else drawn and recorded there (`folder` None: drawn only).
    """
    random_state = config.split_seed + (repeat if config.resplit else 0)
    own = random_state == config.split_seed
    key = split_key(config, dataset.content_hash, random_state)
    recorded = Split.load(folder.split_file, key=key) if folder is not None and own else None
    if recorded is not None:
        return recorded
    parts = make_split(
        dataset.labels,
        kind=config.split,
        random_state=random_state,
        groups_csv=config.groups_csv,
        group_column=config.group_column,
        images=dataset.images,
    )
    if folder is not None and own:
        record_split(folder, config, dataset, parts)
    return parts


def record_split(folder: RunFolder, config: RunConfig, dataset: Dataset, parts: Split) -> None:
    """Record the run's split `parts` in `folder` (`split.npz`), where every notebook of the run reads it."""
    parts.save(folder.split_file, key=split_key(config, dataset.content_hash))
