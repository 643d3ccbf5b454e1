"""The selection rule and the comparison tables."""

import pytest

from helmetlib.study import comparison_tables, observation, select_model, training_table


def result(name, train_f1, validation_f1, parameters, validation_accuracy=None):
    def part(f1, accuracy=None):
        per_class = {"no helmet": {"recall": 0.8}, "helmet": {"recall": 0.9}}
        return {"accuracy": accuracy or f1, "recall": f1, "precision": f1, "f1": f1, "per_class": per_class}

    return {
        "name": name,
        "train": part(train_f1),
        "validation": part(validation_f1, validation_accuracy),
        "parameters": parameters,
        "epochs_run": 20,
    }


def test_best_validation_f1_wins():
    results = {"a": result("a", 0.99, 0.80, 10), "b": result("b", 0.90, 0.85, 1000)}
    assert select_model(results) == "b"


def test_ties_go_to_the_smaller_gap_then_to_fewer_parameters():
    results = {"a": result("a", 1.00, 0.85, 10), "b": result("b", 0.90, 0.8495, 1000), "c": result("c", 0.90, 0.85, 99)}
    assert select_model(results) == "c"  # b and c tie on F1 (within 0.001) and gap; c is smaller
    results["c"] = result("c", 0.95, 0.85, 99)
    assert select_model(results) == "b"  # now b has the smaller gap


def test_comparison_tables_and_observation():
    results = {"a": result("a", 0.99, 0.80, 10), "b": result("b", 0.90, 0.85, 1000)}
    tables = comparison_tables(results)
    assert tables["difference"].loc["a", "f1"] == pytest.approx(0.19)
    assert list(tables["validation"].index) == ["a", "b"]
    text = observation(result("m", 0.99, 0.70, 1, validation_accuracy=0.70))
    assert "overfits" in text and "misses 20.0% of the bare heads" in text


def test_training_table_says_how_each_model_ran():
    results = {"a": result("a", 0.9, 0.8, 10), "b": result("b", 0.9, 0.8, 20)}
    results["a"] |= {
        "mode": "direct",
        "weights": None,
        "precision": "float32",
        "trainable_parameters": 10,
        "train_seconds": 1.5,
        "notes": [],
    }
    results["b"] |= {
        "mode": "fast",
        "weights": {"used": "file"},
        "precision": "bfloat16",
        "trainable_parameters": 5,
        "train_seconds": 2.0,
        "notes": ["x", "y"],
    }
    table = training_table(results)
    assert table.loc["a", "weights"] == "-" and table.loc["b", "weights"] == "file"
    assert table.loc["b", "notes"] == "x; y" and table.loc["b", "precision"] == "bfloat16"


def test_study_split_random_or_grouped(tmp_path):
    import numpy as np
    import pandas as pd

    from helmetlib.study import study_split

    labels = np.tile([0, 1], 60)
    groups = np.repeat(np.arange(30), 4)
    pd.DataFrame({"path": groups}).to_csv(tmp_path / "groups.csv", index=False)
    random = study_split(labels)
    assert random.sizes() == {"train": 84, "validation": 18, "test": 18}
    grouped = study_split(labels, groups_csv=tmp_path / "groups.csv", grouped=True)
    train, validation, test = (set(groups[i]) for i in grouped.parts().values())
    assert not (train & validation or train & test or validation & test)
    with pytest.raises(ValueError, match="a grouped split needs a groups CSV"):
        study_split(labels, grouped=True)
    images = np.random.default_rng(0).integers(0, 256, (120, 32, 32, 3), dtype=np.uint8)
    images[60] = images[0]  # an exact copy: the clusters keep it with its original
    clustered = study_split(labels, grouped=True, images=images)
    side = {index: name for name, part in clustered.parts().items() for index in part}
    assert side[0] == side[60]


def test_split_score_change_trains_on_each_split():
    import numpy as np

    from helmetlib import make_demo_dataset, split
    from helmetlib.splits import grouped_split
    from helmetlib.study import split_score_change

    demo = make_demo_dataset(48, seed=3, image_size=48)
    splits = {"random": split(demo.labels), "grouped": grouped_split(demo.labels, np.arange(48) // 2)}
    table = split_score_change(demo, splits, model_name="cnn", epochs=1, batch_size=16)
    assert list(table.index) == ["random", "grouped"]
    assert table.loc["grouped", "validation images"] == len(splits["grouped"].validation)
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
