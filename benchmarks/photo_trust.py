"""Photo trust on real site photos: what the deployed model's crop check refuses, and how heads at the photo's edge
are judged under each crop rule.

For a finished run folder, on the VOC sample (`--photos`, Pascal VOC: images/ + annotations/) and the run's own
data folder (`--crops`, e.g. helmet-dev):

1. the whole photos given without boxes: the share refused as "not a head crop" (goal: at least 95 %);
2. the run's crops and the crops `helmet-import` cuts from the photos: the share refused (goal: at most 2 %);
3. every annotated head judged through `--boxes`, under the card's rule (`inside`: windows moved into the photo)
   and the rule before it (`replicate`: centred windows, edges replicated): accuracy on the heads whose centred
   window leaves the photo against the others (goal: within 4 points).

    python benchmarks/photo_trust.py reports/final --photos ../shared/data/helmet-voc-sample \\
        --crops ../shared/data/helmet-dev
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from helmetlib.data.dataset import load_dataset
from helmetlib.data.importer import import_photos
from helmetlib.data.photos import HeadBox, read_image_file
from helmetlib.deploy.predict import load_model, predict, predict_photos

CLASSES = {"helmet": 1, "head": 0}


def refused(table) -> str:
    share = table["error"].fillna("").str.startswith("not a head crop").mean()
    return f"{share:.1%} ({int(round(share * len(table)))} of {len(table)})"


def edge_accuracy(model, photos: Path) -> None:
    """Accuracy on edge heads and the others under the card's rule and under the replicate rule."""
    card_rule = model.card.cutting_rule
    for edge in ("inside", "replicate"):
        rule = dataclasses.replace(card_rule, edge=edge)
        rules_model = dataclasses.replace(model, card=dataclasses.replace(model.card, crop_rule=rule))
        table = predict_photos(
            rules_model, [photos / "images"], boxes=photos / "annotations", format="voc", classes=CLASSES
        )
        judged = table[table["label"].notna()].copy()
        leaves = []
        for row in judged.itertuples():
            image, _ = read_image_file(Path(row.source))
            box = HeadBox(*map(float, row.box.split()))
            centred = dataclasses.replace(card_rule, edge="replicate").window(box)
            leaves.append(centred.padded_share(image.shape[:2]) > 0)
        judged["leaves"] = leaves
        judged["right"] = judged["label"] == judged["annotated_label"]
        edge_heads, others = judged[judged["leaves"]], judged[~judged["leaves"]]
        print(
            f"rule {edge:9s}: heads whose centred window leaves the photo {edge_heads['right'].mean():.3f} "
            f"({int((~edge_heads['right']).sum())} wrong of {len(edge_heads)}), the others "
            f"{others['right'].mean():.3f} ({int((~others['right']).sum())} wrong of {len(others)}); gap "
            f"{others['right'].mean() - edge_heads['right'].mean():+.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished helmet-reports run folder")
    parser.add_argument("--photos", type=Path, required=True, help="Pascal VOC photos: images/ and annotations/")
    parser.add_argument("--crops", type=Path, required=True, help="the run's data folder (images_proj.npy)")
    args = parser.parse_args()
    model = load_model(args.run)
    print(f"deployed {model.card.name}; crop check: {model.card.crop_check.describe()}")
    print(f"whole photos without boxes refused: {refused(predict(model, [args.photos / 'images']))}")
    content_only = dataclasses.replace(model.card.crop_check, scale_limit=None)
    alone = dataclasses.replace(model, card=dataclasses.replace(model.card, crop_check=content_only))
    print(f"  by the content part alone: {refused(predict(alone, [args.photos / 'images']))}")
    crops = np.asarray(load_dataset(args.crops).images)
    print(f"the run's crops ({args.crops.name}) refused: {refused(predict(model, crops))}")
    with tempfile.TemporaryDirectory() as scratch:
        imported = Path(scratch) / "crops"
        import_photos(args.photos, imported, format="voc", classes=CLASSES, rule=model.card.cutting_rule)
        cut = np.asarray(load_dataset(imported).images)
        print(f"crops helmet-import cuts from the photos refused: {refused(predict(model, cut))}")
    edge_accuracy(model, args.photos)


if __name__ == "__main__":
    main()
