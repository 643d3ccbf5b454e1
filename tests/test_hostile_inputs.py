"""Import never puts a box on the wrong pixels, never reads outside its source, and one bad line never kills it:
merged COCO exports, EXIF-rotated photos, VOC sizes unlike the photo, ambiguous names, paths and links out of the
source, absurd boxes, ids of the wrong type, YAML bombs. Each case is listed with its file and reason (exit 2 with
--strict), and the rest is imported."""

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_photos import CLASSES, HEIGHT, RULE, WIDTH, synthetic_photos, voc_object, write_coco, write_voc, write_yolo

from helmetlib.commands.import_photos import main as import_main
from helmetlib.data.dataset import load_dataset, load_run_data
from helmetlib.data.importer import ImportFailed, import_photos
from helmetlib.data.photos import HeadBox


@pytest.fixture(scope="module")
def photos():
    return synthetic_photos(count=4, seed=5)


def crops(folder: Path) -> np.ndarray:
    return np.asarray(load_dataset(folder, image_size=None).images)


def reasons(manifest) -> list[str]:
    return sorted(f"{Path(problem.file).name}: {problem.reason}" for problem in manifest.problems)


def test_a_merged_coco_export_with_an_id_given_twice_places_no_box(photos, tmp_path, capsys):
    source = write_coco(tmp_path / "coco", photos)
    data = json.loads((source / "annotations.json").read_text())
    data["images"][1]["id"] = data["images"][0]["id"]  # two exports merged: image ids collide
    (source / "annotations.json").write_text(json.dumps(data))
    manifest = import_photos(source, tmp_path / "out", format="coco", classes=CLASSES, rule=RULE)
    names = list(photos)
    collided = [reason for reason in reasons(manifest) if "image id 1 is given to 2 images" in reason]
    assert len(collided) == 2  # both images listed
    per_photo = [sum(box.class_name != "person" for box in photos[name][1]) for name in names]
    assert manifest.images == sum(per_photo[2:]) and manifest.photos == len(names) - 2  # nothing from either
    entries = sum(entry["image_id"] == 1 for entry in data["annotations"])
    assert sum("names image id 1, which the file lacks or refused" in reason for reason in reasons(manifest)) == entries
    arguments = [str(source), str(tmp_path / "strict"), "--format", "coco", "--classes", "helmet=1,head=0", "--strict"]
    assert import_main(arguments) == 2
    assert "image id 1 is given to 2 images" in capsys.readouterr().err and not (tmp_path / "strict").exists()


def test_yolo_boxes_are_read_against_the_photo_as_decoded_with_its_exif_orientation(photos, tmp_path):
    """A photo stored sideways with EXIF orientation 6 (turn clockwise to view), its YOLO boxes written against
    the photo as viewed (as labelling tools show it): the crops are those of the viewed photo."""
    name, (viewed, boxes) = next(iter(photos.items()))
    source = write_yolo(tmp_path / "yolo", {name: (viewed, boxes)})
    [path] = (source / "train" / "images").glob("*.png")
    stored = np.ascontiguousarray(np.rot90(viewed, k=1))  # turned back a quarter: orientation 6 turns it forward
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), viewed)  # decoded as seen
    manifest = import_photos(source, tmp_path / "out", format="yolo", classes=CLASSES, rule=RULE)
    heads = [box for box in boxes if box.class_name != "person"]
    expected = np.stack([RULE.crop(viewed, box) for box in heads])
    assert manifest.problems == () and manifest.images == len(heads)
    np.testing.assert_array_equal(crops(tmp_path / "out"), expected)


def test_a_voc_size_unlike_the_photo_is_listed_not_used(photos, tmp_path, capsys):
    """Photos re-exported 3x larger with the old XML: every box would land on the wrong pixels."""
    source = write_voc(tmp_path / "voc", photos)
    first = sorted((source / "annotations").glob("*.xml"))[0]
    first.write_text(
        first.read_text().replace(
            "<filename>", f"<size><width>{3 * WIDTH}</width><height>{3 * HEIGHT}</height></size><filename>"
        )
    )
    second = sorted((source / "annotations").glob("*.xml"))[1]
    second.write_text(
        second.read_text().replace(
            "<filename>", f"<size><width>{WIDTH}</width><height>{HEIGHT}</height></size><filename>"
        )
    )
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    [reason] = reasons(manifest)
    assert reason.startswith(
        f"{first.name}: annotated size differs from the photo: the annotation says {3 * WIDTH}x{3 * HEIGHT}, the "
        f"decoded photo is {WIDTH}x{HEIGHT}"
    )
    assert manifest.skipped_files == {"annotated size differs from the photo": 1} and manifest.photos == len(photos) - 1
    arguments = [str(source), str(tmp_path / "strict"), "--format", "voc", "--classes", "helmet=1,head=0", "--strict"]
    assert import_main(arguments) == 2 and "annotated size differs from the photo" in capsys.readouterr().err


def test_two_photos_of_one_name_are_never_guessed_between(photos, tmp_path):
    """annotations/x.xml names x.png, and images/ and extra/ both hold an x.png: which one is not guessed; the VOC
    <folder> tells, when it names one of them."""
    source = write_voc(tmp_path / "voc", dict(list(photos.items())[:2]))
    (source / "extra").mkdir()
    first, second = sorted((source / "images").glob("*.png"))
    (source / "extra" / first.name).write_bytes(second.read_bytes())  # another photo under the same name
    xml = source / "annotations" / f"{first.stem}.xml"
    with_folder = xml.read_text()
    xml.write_text(with_folder.replace("<folder>images</folder>", ""))
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    [reason] = reasons(manifest)
    assert reason.startswith(f"{first.stem}.xml: ambiguous image name {first.name}: 2 photos match")
    assert manifest.photos == 1
    xml.write_text(with_folder)  # <folder>images</folder> decides
    manifest = import_photos(source, tmp_path / "out2", format="voc", classes=CLASSES, rule=RULE)
    assert manifest.problems == () and manifest.photos == 2
    np.testing.assert_array_equal(crops(tmp_path / "out2"), crops(tmp_path / "out2"))


def test_names_and_links_that_leave_the_source_are_listed_and_never_opened(photos, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    name, (image, boxes) = next(iter(photos.items()))
    cv2.imwrite(str(outside / "secret.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))  # a real photo out there
    source = write_voc(tmp_path / "voc", dict(list(photos.items())[:2]))
    objects = "".join(voc_object(box.class_name, box.x1, box.y1, box.x2, box.y2) for box in boxes)
    for stem, filename in (("climbs", "../../outside/secret.png"), ("absolute", str(outside / "secret.png"))):
        xml = f"<annotation><filename>{filename}</filename>{objects}</annotation>"
        (source / "annotations" / f"{stem}.xml").write_text(xml)
    xml = f"<annotation><filename>{outside / 'missing.png'}</filename>{objects}</annotation>"
    (source / "annotations" / "absent.xml").write_text(xml)  # the same answer whether a file exists or not
    (source / "images" / "linked.png").symlink_to(outside / "secret.png")
    (source / "annotations" / "linked.xml").write_text(
        f"<annotation><filename>linked.png</filename>{objects}</annotation>"
    )
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    listed = reasons(manifest)
    leave = "image path leaves the folder read (absolute or '..'), not opened"
    assert f"climbs.xml: {leave}: ../../outside/secret.png" in listed
    assert f"absolute.xml: {leave}: {outside / 'secret.png'}" in listed
    assert f"absent.xml: {leave}: {outside / 'missing.png'}" in listed
    assert "linked.png: link leads outside the folder read, not opened" in listed
    assert "linked.xml: image not found: linked.png" in listed
    assert manifest.photos == 2  # only the two photos inside


def test_absurd_boxes_and_ids_of_the_wrong_type_are_listed_and_the_rest_imported(photos, tmp_path):
    source = write_voc(tmp_path / "voc", dict(list(photos.items())[:2]))
    xml = sorted((source / "annotations").glob("*.xml"))[0]
    absurd = voc_object("helmet", 20, 20, 1e7, 40)  # a typo: x = 1e7
    absurd += voc_object("head", 0, 0, 6000, 6000)  # a box of the wrong photo: 542 MB of padding once
    absurd += voc_object("head", 200, 20, 300, 120)  # 60 of its 100 pixels beyond the 240 px photo
    nan = "<bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
    absurd += f"<object><name>head</name>{nan}</object>"
    xml.write_text(xml.read_text().replace("</annotation>", absurd + "</annotation>"))
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    kinds = sorted(problem.reason.split(" (")[0].split(": ", 1)[1] for problem in manifest.problems)
    assert kinds == [
        "box larger than the photo",
        "box larger than the photo",
        "box reaching far beyond the photo",
        "box with a non-numeric corner",
    ]
    heads = sum(box.class_name != "person" for _, boxes in list(photos.values())[:2] for box in boxes)
    assert manifest.images == heads

    coco = write_coco(tmp_path / "coco", dict(list(photos.items())[:2]))
    data = json.loads((coco / "annotations.json").read_text())
    data["annotations"][0]["image_id"] = [1]
    data["annotations"][1]["category_id"] = {"id": 1}
    (coco / "annotations.json").write_text(json.dumps(data))
    manifest = import_photos(coco, tmp_path / "coco-out", format="coco", classes=CLASSES, rule=RULE)
    assert [problem.reason for problem in manifest.problems] == [
        "malformed annotation 1 (image_id, category_id: numbers or strings)",
        "malformed annotation 2 (image_id, category_id: numbers or strings)",
    ]
    assert manifest.images == heads - 2  # the first photo's first two boxes are heads


def test_a_yaml_bomb_is_refused_without_expanding_it(photos, tmp_path):
    source = write_yolo(tmp_path / "yolo", dict(list(photos.items())[:2]))
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'  # 312 bytes: 9^9 strings once expanded
    for level in "bcdefghi":
        bomb += f"{level}: &{level} [{','.join([f'*{chr(ord(level) - 1)}'] * 9)}]\n"
    bomb += "names: *i\n"
    (source / "data.yaml").write_text(bomb)
    with pytest.raises(ImportFailed, match="no head crop imported"):  # without names, no class is helmet or head
        import_photos(source, tmp_path / "out", format="yolo", classes=CLASSES, rule=RULE)
    manifest_problem = "aliases are not allowed in a class list"
    from helmetlib.data.annotations import PhotoIndex
    from helmetlib.data.formats import read_annotations

    found = read_annotations(source, format="yolo", photos=PhotoIndex.of([source]), classes=CLASSES)
    assert any(
        problem.reason.startswith("malformed YAML") and manifest_problem in problem.reason for problem in found.problems
    )


def test_an_import_with_its_own_crop_rule_from_the_command_line_loads_as_run_data(tmp_path, capsys):
    photos = synthetic_photos(count=8, seed=9)
    source = write_voc(tmp_path / "voc", photos)
    out = tmp_path / "new" / "folders" / "data"  # missing parents are created
    arguments = ["--context", "2.5", "--shift", "0.1", "--image-size", "48", "--min-box", "20", "--edge", "replicate"]
    assert import_main([str(source), str(out), "--format", "voc", "--classes", "helmet=1,head=0", *arguments]) == 0
    assert "helmet-import: " in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["crop_rule"] == {"context": 2.5, "shift": 0.1, "image_size": 48, "min_box": 20, "edge": "replicate"}
    heads = [box for _, boxes in photos.values() for box in boxes if box.class_name != "person"]
    small = [box for box in heads if box.longer_side < 20]
    assert 0 < len(small) < len(heads) and manifest["skipped_boxes"] == {
        "head smaller than --min-box 20 px": len(small)
    }
    dataset = load_run_data(str(out))  # the size recorded by the import is the data's size
    assert dataset.images.shape == (len(heads) - len(small), 48, 48, 3)
    assert (
        import_main([str(source), str(tmp_path / "tiny"), "--format", "voc", "--classes", "a=1", "--image-size", "16"])
        == 2
    )
    assert "image_size must lie between 32 and 1024 pixels" in capsys.readouterr().err


def test_a_head_at_the_photos_edge_is_cut_at_most_a_fifth_padding_and_its_padded_share_recorded(tmp_path):
    import pandas as pd

    photo = np.random.default_rng(4).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    edge = HeadBox(-10, -10, 20, 20, class_name="helmet", label=1)  # in the top left corner, partly outside
    middle = HeadBox(100, 60, 124, 86, class_name="head", label=0)
    source = write_voc(tmp_path / "voc", {"corner.png": (photo, [edge, middle])})
    manifest = import_photos(source, tmp_path / "out", format="voc", classes=CLASSES, rule=RULE)
    provenance = pd.read_csv(tmp_path / "out" / "provenance.csv")
    padded, moved = provenance["padded_share"].iloc[0], provenance[["window_left", "window_top"]].iloc[0]
    assert 0.15 < padded <= 0.2 and provenance["padded_share"].iloc[1] == 0 and manifest.mostly_padding == ()
    assert -25 < moved["window_left"] < 0 and -17 < moved["window_top"] < 0  # moved toward the photo, not into it
    replicated = import_photos(
        source, tmp_path / "old", format="voc", classes=CLASSES, rule=replace(RULE, edge="replicate")
    )
    old = pd.read_csv(tmp_path / "old" / "provenance.csv")
    centred = 1 - (60 - 25) * (60 - 17) / 60**2  # the window (-25, -17, 60) around the head
    assert old["padded_share"].tolist() == [round(centred, 3), 0.0]
    [listed] = replicated.mostly_padding
    assert (listed.row, listed.path, listed.box_index, listed.padded_share) == (
        0,
        "images/corner.png",
        0,
        round(centred, 3),
    )
    assert "1 crops mostly padding" in replicated.summary()
