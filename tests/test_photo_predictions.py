"""Predicting on site photos never answers wrongly without a word and never destroys input: whole photos given as
crops are refused by the card's crop check, heads are cut by the card's own (non-default) crop rule, outputs never
overwrite inputs, only head classes are judged, an evaluation says what it dropped, and drawings can be read.

One run, shared: synthetic photos imported with a crop rule of their own (`--context 2.5 --shift 0.1 --image-size
48`), then `helmet-reports` on them (the CNN), end to end."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import LOG_NOISE, runner
from scipy.special import logit
from test_photos import CLASSES, synthetic_photos, voc_object, write_coco, write_voc, write_yolo

from helmetlib.commands.evaluate import main as evaluate_main
from helmetlib.commands.import_photos import main as import_main
from helmetlib.commands.predict import main as predict_main
from helmetlib.data.dataset import load_dataset
from helmetlib.data.photos import CropRule
from helmetlib.deploy.drawing import MIN_LABEL_PX, Counts, draw_photo, label_font, label_pixels, layout
from helmetlib.deploy.predict import load_model, predict, predict_photos
from helmetlib.run.config import RunConfig
from helmetlib.run.folder import RunRecord

RULE_OPTIONS = ["--context", "2.5", "--shift", "0.1", "--image-size", "48"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(photos, their VOC export, the imported data folder, the run folder) of the shared run."""
    root = tmp_path_factory.mktemp("site")
    photos = synthetic_photos(count=60, seed=11)
    source = write_voc(root / "voc", photos)
    data = root / "data"
    assert import_main([str(source), str(data), "--format", "voc", "--classes", "helmet=1,head=0", *RULE_OPTIONS]) == 0
    options = ["--models", "cnn", "--weights", "none", "--epochs", "10", "--batch-size", "32"]  # real data: 3 repeats
    result = runner(["--out", str(root / "reports"), "--run-id", "site", "--data", str(data), *options, "--no-export"])
    assert result.returncode == 0, result.stderr[-3000:]
    return photos, source, data, root / "reports" / "site"


@pytest.fixture(scope="module")
def model(site):
    return load_model(site[3])


def test_a_run_on_real_data_records_its_defaults_health_and_seed_ensemble(site):
    """Given --data, the runner's real-data defaults hold (3 repeats, batch 128 unless given, here 32), every
    repeat's health is recorded, and the deployed model is the seed ensemble of the healthy repeats."""
    record = RunRecord.read(site[3] / "run.json")
    assert (record.config.repeats, record.config.batch_size, record.config.data_dir) == (3, 32, str(site[2]))
    given = RunConfig.from_parameters(run_id="x", origin="notebook", DATA_DIR=str(site[2]), WEIGHTS="none")
    assert given.batch_size == 128 and given.repeats == 3
    result = record.models["cnn"]
    assert len(result.repeats) == 3 and all(repeat.health is not None for repeat in result.repeats)
    healthy = [repeat.seed for repeat in result.repeats if str(repeat.seed) not in result.left_out]
    assert healthy and set(result.deployed_seeds) == set(healthy) and not result.unhealthy
    alone = f"repeat with seed {healthy[0]}"
    assert result.deployed == (f"seed ensemble of {len(healthy)} repeats" if len(healthy) > 1 else alone)
    assert all(why.startswith(("unhealthy", "collapsed")) for why in result.left_out.values())
    assert result.deployed_health is not None and result.deployed_health.problem is None


def test_the_card_records_the_imports_crop_rule_and_a_crop_check_with_a_scale_part(site, model):
    card = model.card
    assert card.crop_rule == CropRule(context=2.5, shift=0.1, image_size=48)
    check = card.crop_check
    windows = pd.read_csv(site[2] / "provenance.csv")["window_side"]
    assert check.window_sides[1] <= windows.max() and check.scale_limit == int(1.25 * max(windows.max(), 48))
    assert check.unseen_pass == 0.99 and check.validation_pass >= 0.9 and check.fitted_on == card.split.train


def test_whole_photos_given_as_crops_are_refused_and_the_run_s_own_crops_are_not(site, model, tmp_path, capsys):
    photos, source, data, run = site
    table = predict(model, [source / "images"])
    assert len(table) == len(photos) and table["probability"].isna().all()
    assert table["error"].str.startswith("not a head crop (score").all()
    assert (table["head_crop_score"] > 1).all() and table["error"].str.contains("a whole photo?").all()
    crops = predict(model, np.asarray(load_dataset(data, image_size=None).images))
    refused = int(crops["error"].notna().sum())
    assert refused <= 0.05 * len(crops), crops["error"].dropna().tolist()  # 99 % of validation crops pass
    assert crops.loc[crops["error"].isna(), "head_crop_score"].le(1).all()
    out = tmp_path / "whole.csv"
    assert predict_main(["--model", str(run), str(source / "images"), "--out", str(out)]) == 1
    assert f"({len(photos)} not head crops: give head crops, or whole photos with --boxes)" in capsys.readouterr().err


def test_heads_are_cut_by_the_cards_crop_rule_in_every_annotation_format(site, model, tmp_path):
    photos, source, _, _ = site
    few = dict(list(photos.items())[:4])
    heads = [(name, box) for name, (_, boxes) in few.items() for box in boxes if box.class_name != "person"]
    rule = model.card.crop_rule
    crops = np.stack([rule.crop(few[name][0], box) for name, box in heads])
    expected = predict(model, crops, check_crops=False)["probability"].to_numpy(float)
    assert np.ptp(expected) > 0.5  # the model's answers spread: agreement below can fail
    default = np.stack([CropRule(image_size=48).crop(few[name][0], box) for name, box in heads])
    other = predict(model, default, check_crops=False)["probability"].to_numpy(float)
    assert np.abs(logit(other) - logit(expected)).max() > 0.05  # another crop: other evidence (saturated outputs)
    exports = {
        "voc": (write_voc(tmp_path / "voc", few), "annotations"),
        "yolo": (write_yolo(tmp_path / "yolo", few), ""),
        "coco": (write_coco(tmp_path / "coco", few), "annotations.json"),
    }
    csv = tmp_path / "boxes.csv"
    rows = [(f"images/{name}", box.x1, box.y1, box.x2, box.y2, box.class_name) for name, box in heads]
    pd.DataFrame(rows, columns=["path", "xmin", "ymin", "xmax", "ymax", "class_name"]).to_csv(csv, index=False)
    exports["csv"] = (tmp_path / "voc", "../boxes.csv")
    expected_by_head = {(name, box.text()): p for (name, box), p in zip(heads, expected, strict=True)}
    for format, (folder, boxes) in exports.items():
        table = predict_photos(
            model, [folder], boxes=folder / boxes if boxes else folder, format=format, classes=CLASSES
        )
        answered = table[table["error"].isna()]
        assert len(answered) == len(heads), (format, table["error"].dropna().tolist())
        found = {(Path(row.source).name, row.box): row.probability for row in answered.itertuples()}
        assert set(found) == set(expected_by_head), format
        for key, probability in found.items():
            assert probability == pytest.approx(expected_by_head[key], abs=1e-5), (format, key)
        assert answered["padded_share"].notna().all() and answered["head_crop_score"].notna().all()


def test_a_box_outside_its_photo_a_malformed_annotation_and_an_unknown_class_are_error_rows(site, model, tmp_path):
    photos, _, _, _ = site
    few = dict(list(photos.items())[:2])
    source = write_voc(tmp_path / "voc", few)
    first = sorted((source / "annotations").glob("*.xml"))[0]
    first.write_text(first.read_text().replace("</annotation>", voc_object("head", 500, 20, 520, 40) + "</annotation>"))
    (source / "annotations" / "broken.xml").write_text("<annotation><object>")
    yolo = write_yolo(tmp_path / "yolo", few)
    label_file = next(yolo.rglob("*.txt"))
    label_file.write_text(label_file.read_text() + "7 0.5 0.5 0.1 0.1\n")
    voc_rows = predict_photos(model, [source], boxes=source / "annotations", format="voc", classes=CLASSES)
    errors = voc_rows["error"].dropna().tolist()
    assert any(error.startswith("box outside the photo (500 20 520 40") for error in errors)
    assert any(error.startswith("malformed XML") for error in errors)
    yolo_rows = predict_photos(model, [yolo], boxes=yolo, format="yolo", classes=CLASSES)
    assert yolo_rows["error"].dropna().str.startswith("unknown class index 7 on line").sum() == 1


def test_outputs_never_overwrite_or_mix_with_inputs(site, tmp_path, capsys):
    photos, _, _, run = site
    source = write_voc(tmp_path / "voc", dict(list(photos.items())[:2]))
    images = source / "images"
    before = {path.name: path.read_bytes() for path in images.iterdir()}
    base = ["--model", str(run), str(images), "--boxes", str(source / "annotations"), "--format", "voc"]
    for draw, why in (
        (images, "is, holds or lies in an input"),
        (source, "is, holds or lies in an input"),
        (images / "drawn", "is, holds or lies in an input"),
    ):
        assert predict_main([*base, "--draw", str(draw)]) == 2
        assert why in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in images.iterdir()} == before and not (images / "drawn").exists()
    csv = tmp_path / "boxes.csv"
    csv.write_text("path,xmin,ymin,xmax,ymax\n")
    arguments = ["--model", str(run), str(images), "--boxes", str(csv), "--format", "csv", "--out", str(csv)]
    assert predict_main(arguments) == 2 and "is an input or lies among them" in capsys.readouterr().err
    out = tmp_path / "rows.csv"
    unwritable = Path("/proc/1/drawings")  # a folder nobody, root included, can create files in
    assert predict_main([*base, "--draw", str(unwritable), "--out", str(out)]) == 2
    assert "--draw /proc/1/drawings: cannot write in /proc/1" in capsys.readouterr().err
    assert not out.exists()  # refused before any prediction


def test_photos_of_one_name_in_two_folders_get_two_drawings(site, tmp_path):
    photos, _, _, run = site
    names = list(photos)
    root = tmp_path / "sites"
    first = write_voc(root / "a", {"same.png": photos[names[0]]})
    second = write_voc(root / "b", {"same.png": photos[names[1]]})
    draw = tmp_path / "drawn"
    arguments = ["--model", str(run), str(first), str(second), "--boxes", str(root), "--format", "voc"]
    predict_main([*arguments, "--draw", str(draw), "--classes", "helmet=1,head=0", "--out", str(tmp_path / "t.csv")])
    summary = pd.read_csv(draw / "summary.csv")
    assert sorted(summary["drawn"]) == ["a__images__same.png", "b__images__same.png"]
    assert all((draw / name).is_file() for name in summary["drawn"])
    table = pd.read_csv(tmp_path / "t.csv")
    for row in summary.itertuples():  # the banner's counts are the table's
        rows = table[table["source"] == row.photo]
        assert (row.heads, row.bare_heads, row.helmets) == (
            len(rows),
            (rows["label"] == 0).sum(),
            (rows["label"] == 1).sum(),
        )


def test_without_classes_only_heads_are_judged_and_unknown_classes_are_refused(site, tmp_path, capsys):
    photos, _, _, run = site
    few = dict(list(photos.items())[:3])
    source = write_voc(tmp_path / "voc", few)
    out = tmp_path / "rows.csv"
    base = ["--model", str(run), str(source / "images"), "--boxes", str(source / "annotations"), "--format", "voc"]
    predict_main([*base, "--out", str(out)])
    table = pd.read_csv(out)
    heads = sum(box.class_name != "person" for _, boxes in few.values() for box in boxes)
    assert len(table) == heads and table["annotated_label"].notna().all()  # the person boxes are not heads
    summary = capsys.readouterr().err
    assert f"3 photos, {heads} heads judged" in summary
    for xml in (source / "annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>person</name>", "<name>worker</name>"))
    assert predict_main([*base, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "cannot tell which boxes are heads: the annotations name the classes head, helmet, worker" in error
    assert "give --classes" in error


def test_an_evaluation_on_photos_says_what_it_dropped(site, tmp_path, capsys):
    photos, _, _, run = site
    four = dict(list(photos.items())[:4])
    source = write_voc(tmp_path / "voc", four)
    images = sorted((source / "images").glob("*.png"))
    for path in images[1:]:
        path.write_bytes(path.read_bytes()[:200])  # three of four photos unreadable
    cv2.imwrite(str(source / "images" / "lonely.png"), np.full((40, 40, 3), 90, np.uint8))  # no annotation names it
    xml = source / "annotations" / f"{images[0].stem}.xml"
    xml.write_text(xml.read_text().replace("</annotation>", voc_object("head", 100, 100, 108, 108) + "</annotation>"))
    json_file = tmp_path / "evaluation.json"
    arguments = [str(run), "--data", str(source), "--format", "voc", "--classes", "helmet=1,head=0", "--models", "cnn"]
    assert evaluate_main([*arguments, "--json", str(json_file), "--out", str(tmp_path / "page")]) == 0
    printed, errors = capsys.readouterr()
    evaluation = json.loads(json_file.read_text())
    dropped = evaluation["dropped"]
    assert dropped["problem_counts"] == {"truncated or partly decoded image": 3}
    assert dropped["photos_without_boxes"] == 1 and dropped["heads_under_min_box"] == 1
    assert len(dropped["problems"]) == 3 and list(evaluation["models"]) == ["cnn"]
    heads = sum(box.class_name != "person" for box in four[images[0].name][1])
    assert evaluation["models"]["cnn"]["n"] == heads
    line = (
        f"helmet-evaluate: {heads} heads scored; not scored: 3 truncated or partly decoded image, 1 photos without "
        "boxes, 1 heads under --min-box"
    )
    assert line in printed and "bare_head_recall" in printed and "threshold" in printed
    assert "3 truncated or partly decoded image" in (tmp_path / "page" / "index.html").read_text()
    assert not LOG_NOISE.search(errors), errors[-2000:]
    assert (
        evaluate_main([*arguments[:-1], "nonesuch"]) == 2
        and "--models: nonesuch not in this run" in capsys.readouterr().err
    )


def test_drawn_labels_are_readable_clear_of_each_other_and_inside_the_photo(tmp_path):
    """A crowded 416 px photo: twelve heads in two tight rows, one answer differing from its annotation."""
    photo = np.random.default_rng(3).integers(0, 256, (416, 416, 3), dtype=np.uint8)
    boxes = [
        (10 + 34 * column, 5 + 40 * row, 40 + 34 * column, 35 + 40 * row) for row in range(2) for column in range(6)
    ]
    rows = pd.DataFrame(
        {
            "box": [" ".join(map(str, box)) for box in boxes],
            "label": pd.array([1, 0] * 6, dtype="Int64"),
            "annotated_label": pd.array([1, 0] * 5 + [0, 0], dtype="Int64"),  # the 11th head: helmet, annotated bare
            "probability": [0.91, 0.08] * 6,
            "error": [None] * 12,
        }
    )
    assert label_pixels((416, 416)) >= MIN_LABEL_PX
    scale = 800 / 416
    font = label_font((416, 416), scale)
    labels = layout(rows, (416, 416), font, scale)
    size = round(416 * scale)
    for number, label in enumerate(labels):
        x1, y1, x2, y2 = label.rect
        assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size, label
        assert y2 - y1 >= MIN_LABEL_PX * scale  # at least 12 photo pixels of text
        for other in labels[:number]:
            ox1, oy1, ox2, oy2 = other.rect
            assert min(x2, ox2) <= max(x1, ox1) or min(y2, oy2) <= max(y1, oy1), (label, other)
    [different] = [label for label in labels if label.differs]
    assert "≠ annotated bare" in different.text
    counts = Counts.of(rows)
    assert (counts.heads, counts.bare_heads, counts.helmets, counts.differ) == (12, 6, 6, 1)
    drawn = np.asarray(draw_photo(photo, rows, counts))
    magenta = np.all(drawn == (230, 0, 230), axis=-1)
    assert magenta.sum() > 100  # the dashed frame around the differing head
