"""The grouped split keeps every group on one side."""

import numpy as np
import pandas as pd
import pytest
from conftest import HELMET_DEV, require

from helmetlib.data.splits import grouped_split, read_groups


def test_no_group_on_two_sides_and_roughly_stratified():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 120, size=600)  # 120 photos, several crops each
    labels = (groups % 2).astype(int)  # a photo holds one class, as bare heads cluster in helmet-dev
    parts = grouped_split(labels, groups)
    seen = [set(groups[indices]) for indices in parts.parts().values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sorted(np.concatenate(list(parts.parts().values())).tolist()) == list(range(600))
    sizes = parts.sizes()
    assert 0.6 < sizes["train"] / 600 < 0.8 and 0.08 < sizes["test"] / 600 < 0.22
    for indices in parts.parts().values():
        assert 0.3 < labels[indices].mean() < 0.7


def test_group_count_mismatch():
    with pytest.raises(ValueError, match="3 groups for 4 labels"):
        grouped_split(np.array([0, 1, 0, 1]), np.array([1, 2, 3]))


def test_read_groups(tmp_path):
    pd.DataFrame({"row": [0, 1], "path": ["a.png", "b.png"]}).to_csv(tmp_path / "p.csv", index=False)
    assert read_groups(tmp_path / "p.csv").tolist() == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="no 'photo' column"):
        read_groups(tmp_path / "p.csv", "photo")


def test_helmet_dev_photos_never_straddle():
    folder = require(HELMET_DEV, "helmet-dev photo set")
    groups = read_groups(folder / "provenance.csv")
    labels = pd.read_csv(folder / "Labels_proj.csv")["Label"].to_numpy()
    parts = grouped_split(labels, groups)
    train, validation, test = (set(groups[i]) for i in parts.parts().values())
    assert not (train & validation or train & test or validation & test)


def test_shared_groups_counts_by_hand():
    from helmetlib.data.splits import Split, shared_groups

    groups = np.array(["a", "a", "b", "c", "c", "d"])
    parts = Split(train=np.array([0, 2]), validation=np.array([1, 3]), test=np.array([4, 5]))
    table = shared_groups(parts, groups)
    assert table.loc["train / validation", "shared groups"] == 1  # a
    assert table.loc["validation / test", "shared groups"] == 1  # c
    assert table.loc["train / test", "shared groups"] == 0
    assert table.loc["validation / test", "images of the second part with a group in the first"] == 1
