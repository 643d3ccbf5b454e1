"""Peak memory of `helmet-import` as the number of photos grows: it must stay bounded (crops are streamed into the
memory-mapped `.npy`, photos read one at a time), so the peak RSS of 4x the photos should be about the same.

For each size it writes that many synthetic site photos (640x480 JPEG, 4 heads each, Pascal VOC XML) into a
scratch folder, runs `helmet-import` in a process of its own and prints photos, crops, seconds, peak RSS and the
size of the written images file.

    python benchmarks/import_memory.py --photos 500,2000 --scratch /tmp/import-bench
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

# helmet-import in a process of its own, printing its peak resident memory (KiB) when done
MEASURED = (
    "import resource, sys; from helmetlib.commands.import_photos import main; status = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(status)"
)


def write_photos(root: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for number in range(count):
        photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        objects = []
        for slot in range(4):
            side = int(rng.integers(20, 60))
            x1, y1 = 40 + 150 * slot, int(rng.integers(40, 300))
            name = ("helmet", "head")[slot % 2]
            cv2.circle(
                photo, (x1 + side // 2, y1 + side // 2), side // 2, (20, 200, 250) if slot % 2 else (110, 150, 200), -1
            )
            objects.append(
                f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                f"<xmax>{x1 + side}</xmax><ymax>{y1 + side}</ymax></bndbox></object>"
            )
        cv2.imwrite(str(root / "images" / f"photo{number}.jpg"), photo)
        xml = f"<annotation><filename>photo{number}.jpg</filename>{''.join(objects)}</annotation>"
        (root / "annotations" / f"photo{number}.xml").write_text(xml)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="500,2000", help="comma-separated numbers of photos")
    parser.add_argument("--scratch", default="/tmp/helmet-import-bench", help="scratch folder (deleted first)")
    args = parser.parse_args()
    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'photos':>7} {'crops':>7} {'seconds':>8} {'peak RSS MB':>12} {'images MB':>10}")
    for count in (int(value) for value in args.photos.split(",")):
        source, out = scratch / f"source{count}", scratch / f"data{count}"
        write_photos(source, count)
        started = time.perf_counter()
        arguments = [str(source), str(out), "--format", "voc", "--classes", "helmet=1,head=0"]
        done = subprocess.run([sys.executable, "-c", MEASURED, *arguments], check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_mb = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
        crops = sum(1 for _ in (out / "Labels_proj.csv").open()) - 1
        images_mb = (out / "images_proj.npy").stat().st_size / 2**20
        print(f"{count:7d} {crops:7d} {seconds:8.1f} {peak_mb:12.0f} {images_mb:10.0f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
