"""Real photos in and out: the crop rule, `helmet-import` of VOC / YOLO / COCO / folders (the same crops from each),
every bad-input kind listed, the photo groups used by a grouped split, and `helmet-predict --boxes`.

Photos and annotations are written by the tests (noise photos with coloured heads); the real VOC sample is used
only when `../shared` is beside the checkout."""

import hashlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import LOG_NOISE, SHARED, require

from helmetlib.commands.import_photos import main as import_main
from helmetlib.commands.predict import main as predict_main
from helmetlib.data.dataset import load_dataset
from helmetlib.data.importer import ImportFailed, import_photos
from helmetlib.data.photos import CropRule, HeadBox, Window, square_crop
from helmetlib.data.splits import make_split, shared_groups
from helmetlib.deploy.drawing import MIN_DRAWN_SIDE
from helmetlib.deploy.predict import load_model, predict, predict_photos
from helmetlib.evaluation.results import DataInfo
from helmetlib.run.config import RunConfig

CLASSES = {"helmet": 1, "head": 0}
RULE = CropRule(image_size=64)
HEIGHT, WIDTH = 180, 240
VOC_SAMPLE = SHARED / "data" / "helmet-voc-sample"


COLOURS = {  # helmets and heads of several colours, as on a site
    "helmet": [(250, 210, 20), (240, 240, 240), (220, 40, 30), (30, 90, 200)],
    "head": [(200, 150, 110), (140, 100, 70), (230, 190, 160)],
}


def synthetic_photos(count: int = 12, seed: int = 0) -> dict[str, tuple[np.ndarray, list[HeadBox]]]:
    """`count` noise photos (RGB, 180x240), each with 2-3 heads (a filled disc inside an integer box, helmet or bare
    head by turns) whose crop windows lie inside the photo, and one `person` box."""
    rng = np.random.default_rng(seed)
    photos = {}
    for number in range(count):
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        boxes = []
        for slot in range(2 + number % 2):
            side = int(rng.integers(8, 14)) * 2  # even sides: window corners are whole pixels
            x1, y1 = 20 + 75 * slot + int(rng.integers(0, 10)), 40 + int(rng.integers(0, 40))
            class_name = ("helmet", "head")[(number + slot) % 2]
            colour = COLOURS[class_name][int(rng.integers(0, len(COLOURS[class_name])))]
            cv2.circle(image, (x1 + side // 2, y1 + side // 2), side // 2, colour, -1)
            boxes.append(HeadBox(x1, y1, x1 + side, y1 + side, class_name=class_name, label=CLASSES[class_name]))
        boxes.append(HeadBox(5, 5, 60, 170, class_name="person"))
        photos[f"site{number:02d}.png"] = image, boxes
    return photos


def voc_object(name: str, x1: float, y1: float, x2: float, y2: float) -> str:
    corners = "".join(
        f"<{key}>{value:g}</{key}>"
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True)
    )
    return f"<object><name>{name}</name><bndbox>{corners}</bndbox></object>"


def write_voc(root: Path, photos) -> Path:
    for name, (image, boxes) in photos.items():
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        objects = "".join(voc_object(box.class_name, box.x1, box.y1, box.x2, box.y2) for box in boxes)
        xml = f"<annotation><folder>images</folder><filename>{name}</filename>{objects}</annotation>"
        (root / "annotations" / f"{Path(name).stem}.xml").write_text(xml)
    return root


def write_yolo(root: Path, photos) -> Path:
    names = ["head", "helmet", "person"]
    root.mkdir(parents=True)
    (root / "data.yaml").write_text(f"names: {names}\n")
    for number, (name, (image, boxes)) in enumerate(photos.items()):
        part = ("train", "valid")[number % 2]
        (root / part / "images").mkdir(parents=True, exist_ok=True)
        (root / part / "labels").mkdir(exist_ok=True)
        cv2.imwrite(str(root / part / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        lines = [
            f"{names.index(box.class_name)} {(box.x1 + box.x2) / 2 / WIDTH:.7f} {(box.y1 + box.y2) / 2 / HEIGHT:.7f} "
            f"{box.width / WIDTH:.7f} {box.height / HEIGHT:.7f}"
            for box in boxes
        ]
        (root / part / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_coco(root: Path, photos) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": 1, "name": "helmet"}, {"id": 2, "name": "head"}, {"id": 3, "name": "person"}]
    ids = {category["name"]: category["id"] for category in categories}
    images, annotations = [], []
    for image_id, (name, (image, boxes)) in enumerate(photos.items(), start=1):
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": f"images/{name}", "width": WIDTH, "height": HEIGHT})
        for box in boxes:
            bbox = [box.x1, box.y1, box.width, box.height]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[box.class_name], "bbox": bbox}
            )
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def write_folders(root: Path, photos) -> Path:
    """Each head's crop window, cut by hand (inside the photo, so no padding), as a file in its class's folder."""
    root.mkdir(parents=True)
    for name, (image, boxes) in photos.items():
        for index, box in enumerate(box for box in boxes if box.class_name != "person"):
            window = RULE.window(box)
            cut = image[window.top : window.top + window.side, window.left : window.left + window.side]
            (root / box.class_name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(root / box.class_name / f"{Path(name).stem}_{index}.png"), cv2.cvtColor(cut, cv2.COLOR_RGB2BGR)
            )
    return root


WRITERS = {"voc": write_voc, "yolo": write_yolo, "coco": write_coco, "folders": write_folders}


@pytest.fixture(scope="module")
def photos():
    return synthetic_photos()


@pytest.fixture(scope="module")
def imported(photos, tmp_path_factory):
    """Each format's data folder, imported from the same photos."""
    root = tmp_path_factory.mktemp("imports")
    folders = {}
    for format, write in WRITERS.items():
        source = write(root / f"{format}-source", photos)
        folders[format] = root / format
        import_photos(source, folders[format], format=format, classes=CLASSES, rule=RULE)
    return folders


def crop_set(folder: Path) -> list[tuple[int, str]]:
    dataset = load_dataset(folder, image_size=None)
    images = np.asarray(dataset.images[: len(dataset)])
    return sorted(
        (int(label), hashlib.sha1(image.tobytes()).hexdigest())
        for image, label in zip(images, dataset.labels, strict=True)
    )


def test_crop_window_and_padding_equal_hand_computed_ones():
    box = HeadBox(100, 80, 140, 132)  # 40 x 52: side 2 x 52 = 104, centre (120, 106 + 0.25 x 52 = 119)
    assert RULE.window(box) == Window(left=68, top=67, side=104)
    photo = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    corner = HeadBox(-4, 2, 16, 22)  # window: side 40 from (-14, -3), leaves the photo left and top
    replicate = replace(RULE, edge="replicate")
    assert replicate.window(corner, photo.shape[:2]) == Window(left=-14, top=-3, side=40)
    padded = np.pad(photo, ((3, 0), (14, 0), (0, 0)), mode="edge")[:40, :40]
    expected = cv2.resize(padded, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(replicate.crop(photo, corner), expected)
    assert Window(left=-14, top=-3, side=40).padded_share(photo.shape[:2]) == pytest.approx(1 - 26 * 37 / 40**2)
    np.testing.assert_array_equal(square_crop(photo, Window(10, 20, 30), 30), photo[20:50, 10:40])


def contains(window: Window, box: HeadBox, photo_size: tuple[int, int]) -> bool:
    """`window` holds the part of `box` that lies in the photo."""
    height, width = photo_size
    x1, y1, x2, y2 = max(box.x1, 0), max(box.y1, 0), min(box.x2, width), min(box.y2, height)
    return window.left <= x1 and window.top <= y1 and window.left + window.side >= x2 and window.top + window.side >= y2


def test_the_inside_rule_moves_edge_windows_until_a_fifth_at_most_is_padding_never_shrinking_below_the_head():
    photo = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    size = photo.shape[:2]
    corner = HeadBox(-4, 2, 16, 22)  # centred window (-14, -3, 40): 40 % padding; half way to (0, 0): 19.6 %
    window = RULE.window(corner, size)
    assert window == Window(left=-7, top=-1, side=40) and window.padded_share(size) == 1 - 33 * 39 / 40**2
    expected = cv2.resize(
        np.pad(photo, ((1, 0), (7, 0), (0, 0)), mode="edge")[:40, :40], (64, 64), interpolation=cv2.INTER_AREA
    )
    np.testing.assert_array_equal(RULE.crop(photo, corner), expected)
    bottom_right = HeadBox(100, 70, 120, 90)  # centred window (90, 65, 40): 53 % padding
    window = RULE.window(bottom_right, size)
    assert 80 <= window.left < 90 and 50 <= window.top < 65 and window.padded_share(size) <= 0.2
    assert contains(window, bottom_right, size)
    one_step_less = Window(window.left + 1, window.top + 1, 40)  # moved no further than it must
    assert one_step_less.padded_share(size) > 0.2
    wide = HeadBox(20, 10, 70, 80)  # 50 x 70: a 140 px window in a 90 px high photo: shrunk to 90, over the head
    window = RULE.window(wide, size)
    assert window.side == 90 and contains(window, wide, size) and window.padded_share(size) <= 0.2
    inside = HeadBox(50, 30, 70, 50)  # its window lies in the photo: unchanged
    assert RULE.window(inside, size) == replace(RULE, edge="replicate").window(inside, size)
    tall = HeadBox(50, -10, 80, 95)  # a head longer (105 px) than the photo is high keeps its size: padded
    window = RULE.window(tall, size)
    assert window.side == 105 and window.padded_share(size) == 1 - 90 * 105 / 105**2  # only the height is padded
    assert RULE.crop(photo, tall).shape == (64, 64, 3)


def test_a_crop_rule_recorded_before_the_edge_rule_keeps_replicating_edges():
    old = CropRule.from_json({"context": 2.0, "shift": 0.25, "image_size": 64, "min_box": 14})
    assert old.edge == "replicate" and CropRule().edge == "inside"


def test_the_four_formats_give_the_same_crops(imported, photos):
    heads = sum(box.class_name != "person" for _, boxes in photos.values() for box in boxes)
    crops = {format: crop_set(folder) for format, folder in imported.items()}
    assert len(crops["voc"]) == heads
    for format in ("yolo", "coco", "folders"):
        assert crops[format] == crops["voc"], format
    manifest = json.loads((imported["voc"] / "manifest.json").read_text())
    assert manifest["images"] == heads and manifest["photos"] == len(photos)
    assert manifest["ignored_classes"] == {"person": len(photos)}
    assert manifest["crop_rule"] == {"context": 2.0, "shift": 0.25, "image_size": 64, "min_box": 14, "edge": "inside"}
    assert manifest["problems"] == []
    provenance = pd.read_csv(imported["voc"] / "provenance.csv")
    assert len(provenance) == heads and provenance["path"].nunique() == len(photos)
    assert set(provenance["path"]) == {f"images/{name}" for name in photos}
    first = provenance.iloc[0]
    box = HeadBox(first.xmin, first.ymin, first.xmax, first.ymax)
    assert RULE.window(box) == Window(int(first.window_left), int(first.window_top), int(first.window_side))


def test_the_crop_rule_of_an_import_travels_with_the_data_record(imported, demo_folder):
    dataset = load_dataset(imported["coco"], image_size=None)
    assert DataInfo.of(dataset, str(imported["coco"])).crop_rule == RULE  # model cards carry this record
    assert DataInfo.of(load_dataset(demo_folder, image_size=None), str(demo_folder)).crop_rule is None


def test_a_grouped_split_uses_the_photos_of_an_import_without_a_groups_file(imported):
    config = RunConfig.from_parameters(
        run_id="grouped", origin="notebook", DATA_DIR=str(imported["voc"]), SPLIT="grouped", WEIGHTS="none"
    )
    assert config.groups_csv == str(imported["voc"] / "provenance.csv")
    dataset = load_dataset(config.data_dir, image_size=None)
    split = make_split(dataset.labels, kind="grouped", groups_csv=config.groups_csv)
    photos = pd.read_csv(config.groups_csv)["path"].to_numpy()
    assert shared_groups(split, photos)["shared groups"].sum() == 0
    random = make_split(dataset.labels, kind="random")
    assert shared_groups(random, photos)["shared groups"].sum() > 0  # what the grouped split prevents


def write_bad_voc(root: Path, photos) -> Path:
    """A VOC export with one of each problem, beside good photos."""
    write_voc(root, dict(list(photos.items())[:4]))
    annotations = root / "annotations"
    (annotations / "broken.xml").write_text("<annotation><object><name>helmet</name>")
    (annotations / "missing.xml").write_text("<annotation><filename>nowhere.png</filename></annotation>")
    (annotations / "other.xml").write_text("<svg/>")
    whole = (root / "images" / "site02.png").read_bytes()
    (root / "images" / "corrupt.png").write_bytes(whole[: len(whole) // 2])  # a transfer cut in the middle
    (root / "images" / "edge.png").write_bytes((root / "images" / "site00.png").read_bytes())
    objects = {
        "corrupt": voc_object("helmet", 1, 1, 30, 30),
        "edge": voc_object("helmet", 300, 10, 330, 40)  # outside the 240-wide photo
        + voc_object("head", 50, 50, 50, 80)  # zero width
        + voc_object("head", 50, 50, 60, 58)  # a 10 px head, under --min-box
        + "<object><name>head</name><bndbox><xmin>oops</xmin></bndbox></object>"
        + voc_object("dog", 1, 1, 30, 30),
        "empty": "",
    }
    for stem, body in objects.items():
        (annotations / f"{stem}.xml").write_text(f"<annotation><filename>{stem}.png</filename>{body}</annotation>")
    (root / "images" / "empty.png").write_bytes((root / "images" / "site01.png").read_bytes())
    return root


def test_every_bad_input_is_listed_with_its_file_and_reason(photos, tmp_path, capsys):
    source = write_bad_voc(tmp_path / "voc", photos)
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    reasons = {(Path(problem.file).name, problem.reason.split(" (")[0]) for problem in manifest.problems}
    assert reasons == {
        ("broken.xml", "malformed XML"),
        ("missing.xml", "image not found: nowhere.png"),
        ("other.xml", "not a Pascal VOC annotation"),
        ("empty.xml", "annotation file has no boxes"),
        ("corrupt.png", "truncated or partly decoded image"),
        ("edge.xml", "box 0: box outside the photo"),
        ("edge.xml", "box 1: zero-size box"),
        ("edge.xml", "malformed box in object 4"),
    }
    assert manifest.skipped_boxes == {
        "box outside the photo": 1,
        "zero-size box": 1,
        "head smaller than --min-box 14 px": 1,
    }
    assert manifest.ignored_classes == {"person": 4, "dog": 1}
    assert manifest.skipped_files == {"truncated or partly decoded image": 1}
    assert manifest.problem_counts == {
        "malformed XML": 1,
        "image not found": 1,
        "not a Pascal VOC annotation": 1,
        "annotation file has no boxes": 1,
        "malformed box in object": 1,
        "truncated or partly decoded image": 1,
        "box outside the photo": 1,
        "zero-size box": 1,
    }
    good = sum(box.class_name != "person" for _, boxes in list(photos.values())[:4] for box in boxes)
    assert manifest.images == good  # edge.png repeats site00.png but its heads are all bad: nothing duplicated

    assert (
        import_main(
            [str(source), str(tmp_path / "strict"), "--format", "voc", "--classes", "helmet=1,head=0", "--strict"]
        )
        == 2
    )
    assert "--strict: " in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
    assert not list(tmp_path.glob(".strict*"))  # no half-written folder either


def test_yolo_and_coco_problems_are_listed(photos, tmp_path):
    yolo = write_yolo(tmp_path / "yolo", dict(list(photos.items())[:2]))
    labels = yolo / "train" / "labels"
    (labels / "site00.txt").write_text("1 0.5 0.5\n7 0.5 0.5 0.1 0.1\n" + (labels / "site00.txt").read_text())
    (yolo / "valid" / "labels" / "site01.txt").write_text("")
    manifest = import_photos(yolo, tmp_path / "yolo-out", format="yolo", classes=CLASSES, rule=RULE, strict=False)
    reasons = sorted(problem.reason.split(" (")[0] for problem in manifest.problems)
    assert reasons == [
        "annotation file has no boxes",
        "malformed line 1: '1 0.5 0.5'",
        "unknown class index 7 on line 2",
    ]
    assert manifest.per_source_folder == {"train/images": 2}

    coco = write_coco(tmp_path / "coco", dict(list(photos.items())[:2]))
    data = json.loads((coco / "annotations.json").read_text())
    data["annotations"][0]["category_id"] = 99
    (coco / "annotations.json").write_text(json.dumps(data))
    (coco / "broken.json").write_text("{not json")
    manifest = import_photos(coco, tmp_path / "coco-out", format="coco", classes=CLASSES, rule=RULE)
    reasons = sorted(problem.reason.split(" (")[0] for problem in manifest.problems)
    assert reasons == ["malformed JSON", "unknown category id 99 in annotation 1"]


def test_an_import_without_both_classes_or_into_an_existing_folder_is_refused(photos, tmp_path, capsys):
    source = write_voc(tmp_path / "voc", photos)
    with pytest.raises(ImportFailed, match="every imported crop has label 1"):
        import_photos(source, tmp_path / "one", format="voc", classes={"helmet": 1}, rule=RULE)
    with pytest.raises(ImportFailed, match="no head crop imported"):
        import_photos(source, tmp_path / "none", format="voc", classes={"hat": 1}, rule=RULE)
    (tmp_path / "exists").mkdir()
    assert import_main([str(source), str(tmp_path / "exists"), "--format", "voc", "--classes", "helmet=1,head=0"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert import_main([str(source), str(tmp_path / "x"), "--format", "voc", "--classes", "helmet=yes"]) == 2
    assert "--classes: 'helmet=yes' is not NAME=0 or NAME=1" in capsys.readouterr().err
    assert (
        import_main([str(source), str(tmp_path / "x"), "--format", "voc", "--classes", "a=1", "--context", "0.5"]) == 2
    )
    assert "context must lie between 1 (the window holds the box) and 8, got 0.5" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.importing-*")) and not (tmp_path / "one").exists()


def test_exact_duplicate_crops_are_dropped(photos, tmp_path):
    name, (image, boxes) = next(iter(photos.items()))
    twice = {name: (image, boxes + boxes[:1])}
    manifest = import_photos(
        write_voc(tmp_path / "voc", twice), tmp_path / "out", format="voc", classes=CLASSES, rule=RULE
    )
    assert manifest.skipped_boxes == {"exact duplicate crop": 1}
    assert manifest.images == len(boxes) - 1  # the person box is ignored


@pytest.fixture(scope="module")
def run_model(finished_run):
    status, out, _ = finished_run
    assert status == 0
    return load_model(out / "tiny")


def test_predict_on_photos_gives_one_row_per_head_cropped_by_the_rule(run_model, photos, tmp_path, capfd):
    source = write_voc(tmp_path / "voc", dict(list(photos.items())[:3]))
    small = source / "annotations" / "site00.xml"
    small.write_text(
        small.read_text().replace("</annotation>", voc_object("head", 200, 150, 210, 160) + "</annotation>")
    )
    cv2.imwrite(str(source / "images" / "unannotated.png"), np.zeros((20, 20, 3), np.uint8))
    table = predict_photos(run_model, [source / "images"], boxes=source / "annotations", format="voc", classes=CLASSES)
    heads = [
        (name, box) for name, (_, boxes) in list(photos.items())[:3] for box in boxes if box.class_name != "person"
    ]
    answered = table[table["error"].isna()]
    assert len(answered) == len(heads)
    rule = run_model.card.crop_rule  # a run on the demo set: the default rule
    assert rule == CropRule()
    crops = np.stack([rule.crop(photos[name][0], box) for name, box in heads])
    expected = predict(run_model, crops, check_crops=False)  # on photos the score is a column, not a refusal
    np.testing.assert_allclose(
        answered["probability"].to_numpy(float), expected["probability"].to_numpy(float), atol=1e-6
    )
    assert answered["box"].tolist() == [box.text() for _, box in heads]
    assert answered["annotated_label"].tolist() == [box.label for _, box in heads]
    errors = table.loc[table["error"].notna(), ["source", "box", "error"]]
    assert sorted(Path(source).name for source in errors["source"]) == ["site00.png", "unannotated.png"]
    assert errors["error"].str.startswith("head smaller than --min-box 14 px").sum() == 1
    assert errors["error"].str.startswith("no head boxes for this photo").sum() == 1

    draw, out = tmp_path / "drawn", tmp_path / "rows.json"
    arguments = ["--model", str(run_model.path), str(source / "images"), "--boxes", str(source / "annotations")]
    status = predict_main(
        [*arguments, "--format", "voc", "--classes", "helmet=1,head=0", "--draw", str(draw), "--out", str(out)]
    )
    assert status == 1  # two error rows
    assert len(json.loads(out.read_text())) == len(table)
    summary = pd.read_csv(draw / "summary.csv")
    per_photo = [sum(box.class_name != "person" for box in boxes) for _, boxes in list(photos.values())[:3]]
    assert summary["heads"].tolist() == [per_photo[0] + 1, *per_photo[1:]]  # site00 has the small head too
    assert summary["not_judged"].tolist() == [1, 0, 0]
    drawn = cv2.imread(str(draw / summary["drawn"][0]))
    scale = MIN_DRAWN_SIDE / WIDTH  # a small photo is drawn enlarged
    assert drawn.shape[1] == round(WIDTH * scale) and drawn.shape[0] > round(HEIGHT * scale)  # under a banner
    errors = capfd.readouterr().err  # file descriptors: TensorFlow's own log lines would show here
    assert "helmet-predict: 3 photos, 7 heads judged" in errors
    assert not LOG_NOISE.search(errors), errors
    assert predict_main(arguments) == 2
    assert "--boxes needs --format" in capfd.readouterr().err
    assert predict_main(["--model", str(run_model.path), str(source / "images"), "--draw", str(draw)]) == 2
    assert "--draw needs --boxes" in capfd.readouterr().err


def test_real_voc_sample_imports_one_crop_per_head_box(tmp_path):
    """The 42 real photos of ../shared: every helmet / head box at or above --min-box becomes one crop."""
    from defusedxml.ElementTree import parse

    source = require(VOC_SAMPLE, "the real VOC sample (helmet-voc-sample)")
    boxes = Counter()
    for xml in (source / "annotations").glob("*.xml"):
        for element in parse(xml).getroot().findall("object"):
            corners = [float(element.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")]
            big = max(corners[2] - corners[0], corners[3] - corners[1]) >= 14
            boxes[(element.findtext("name"), big)] += 1
    manifest = import_photos(source, tmp_path / "sample", format="voc", classes=CLASSES)
    assert manifest.per_class == {"helmet": boxes[("helmet", True)], "head": boxes[("head", True)]}
    small = boxes[("helmet", False)] + boxes[("head", False)]
    assert manifest.skipped_boxes == ({"head smaller than --min-box 14 px": small} if small else {})
    ignored = Counter()
    for (name, _), count in boxes.items():
        ignored[name] += count if name not in CLASSES else 0
    assert manifest.ignored_classes == {name: count for name, count in ignored.items() if count}
    assert manifest.photos == 42 and manifest.problems == ()
    assert load_dataset(tmp_path / "sample").images.shape == (manifest.images, 200, 200, 3)


def test_a_malformed_crop_rule_is_refused_not_replaced_by_the_default(photos, tmp_path, capsys):
    from helmetlib.commands.reports import main as reports_main
    from helmetlib.data.dataset import DatasetError

    data = tmp_path / "data"  # the study's 200 px crops, as helmet-reports reads them
    import_photos(write_voc(tmp_path / "voc", photos), data, format="voc", classes=CLASSES)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["crop_rule"]["context"] = "wide"
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"manifest.json: bad CropRule record: key 'context'"):
        DataInfo.of(load_dataset(data, image_size=None), str(data))
    out = tmp_path / "reports"
    assert reports_main(["--out", str(out), "--data", str(data), "--models", "cnn", "--weights", "none"]) == 2
    assert "bad CropRule record: key 'context'" in capsys.readouterr().err and not out.exists()
