"""Benchmark the full helmet-reports pipeline against one backbone pass over the same images.

Prints the CPU (or GPU) and the backbone's images/second (float32 and the run's faster precision, measured in this
process), one backbone pass over the data, the pipeline's wall time with a cold feature cache, and per stage: its
seconds and passes, the seconds inside backbone passes and model inference, inside training epochs, and the rest
(the overhead: kernels, imports, model builds, pages), each timed in the same run (`helmetlib.core.timings`); then
peak memory (RSS summed over the runner, its kernels and Dask workers), each model's training seconds per epoch (the
figure to compare across runs), the run folder's size and the decisions.
Options it does not know go to helmet-reports (e.g. --workers 2). With --faithful and --epochs below 20 it also
extrapolates the 20-epoch cost from the per-epoch backbone cost. With --profile every stage's kernel is profiled
(cProfile, `HELMETLIB_PROFILE`; its seconds then run slower) and, per stage, the library functions with the most
cumulative seconds and the functions with the most seconds of their own are printed; the statistics stay in
`<out>/profiles/<stage>.prof` for `python -m pstats`.

    python benchmarks/pipeline.py --data ../shared/data/helmet-dev \
        --weights ../shared/weights/vgg16-hed-notop.weights.h5
    python benchmarks/pipeline.py --data ... --weights ... --faithful --epochs 1
    python benchmarks/pipeline.py --data ... --weights ... --profile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from helmetlib.core.env import PROFILE_ENV, TIMINGS_ENV
from helmetlib.core.specs import MODEL_NAMES
from helmetlib.core.weights import resolve_weights
from helmetlib.data.dataset import load_run_data
from helmetlib.models.builders import vgg16_backbone
from helmetlib.models.features import backbone_precision, compute_features, pass_extractor
from helmetlib.run.folder import RunRecord

STUDY_EPOCHS = 20


def backbone_images_per_second(images, weights, precision: str, *, sample: int = 64) -> float:
    """Throughput of the frozen VGG16 on `sample` images (after one warm-up batch)."""
    extractor = pass_extractor(vgg16_backbone(resolve_weights(weights), images.shape[1:]), "unit", precision)
    compute_features(extractor, images[:32], normalization="unit")
    started = time.perf_counter()
    compute_features(extractor, images[:sample], normalization="unit")
    return sample / (time.perf_counter() - started)


class PeakMemory:
    """Polls the RSS of a process and all its descendants; keeps the peak of the sum."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.process, self.interval, self.peak = psutil.Process(pid), interval, 0
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while self.process.is_running():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(self.interval)


def cpu_name() -> str:
    """The processor's model name and its bfloat16 instructions (from /proc/cpuinfo), or the platform's name."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = {flag for line in info.splitlines() if line.startswith("flags") for flag in line.split()}
    found = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags] or ["no bfloat16 instructions"]
    return f"{name} ({', '.join(found)}), {os.cpu_count()} cores"


def print_stage_table(stage_seconds: dict[str, float], timings: Path, one_pass: float, wall: float) -> None:
    """Per stage: seconds and passes, then the seconds inside backbone passes / inference, inside training epochs,
    and outside both (the overhead), in seconds and passes; and the whole run's."""
    inside = seconds_inside(timings)
    print("| stage | seconds | passes | backbone + inference s | training s | overhead s | overhead passes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    totals = [0.0, 0.0, 0.0]
    for stage, seconds in stage_seconds.items():
        backbone, training = inside.get((stage, "backbone"), 0.0), inside.get((stage, "training"), 0.0)
        overhead = seconds - backbone - training
        for index, value in enumerate((backbone, training, overhead)):
            totals[index] += value
        print(
            f"| `{stage}` | {seconds:.1f} | {seconds / one_pass:.2f} | {backbone:.1f} | {training:.1f} | "
            f"{overhead:.1f} | {overhead / one_pass:.2f} |"
        )
    outside = wall - sum(stage_seconds.values())  # the runner's own checks, split, pages, between the stages
    print(
        f"| **whole run** | **{wall:.1f}** | **{wall / one_pass:.2f}** | {totals[0]:.1f} | {totals[1]:.1f} | "
        f"{totals[2] + outside:.1f} | **{(totals[2] + outside) / one_pass:.2f}** |"
    )


def seconds_inside(timings: Path) -> dict[tuple[str, str], float]:
    """{(stage, "training" or "backbone"): seconds} summed from the run's timings file."""
    inside: dict[tuple[str, str], float] = {}
    for line in timings.read_text().splitlines() if timings.is_file() else []:
        entry = json.loads(line)
        key = (entry["stage"], "training" if entry["kind"] == "training" else "backbone")
        inside[key] = inside.get(key, 0.0) + entry["seconds"]
    return inside


def print_epoch_seconds(record: RunRecord, timings: Path) -> None:
    """Per model trained in epochs: the epochs its stage trained (abandoned attempts included) and its training
    seconds per epoch, the figure to compare across runs (a whole run moves with the machine's state)."""
    inside = seconds_inside(timings)
    for name, result in record.models.items():
        epochs = sum(repeat.epochs_run + sum(r.epoch for r in repeat.restarts) for repeat in result.repeats)
        stage = next((label for label in record.stage_seconds if label.endswith(f"[{name}]")), None)
        training = inside.get((stage, "training"), 0.0)
        if epochs and training:
            print(f"  {name:17s} {epochs} epochs trained in {training:.1f} s: {training / epochs:.2f} s per epoch")


def print_profiles(folder: Path, *, top: int = 10) -> None:
    """Per stage profiled: the helmetlib functions with the most cumulative seconds and the functions (any) with
    the most seconds of their own."""
    for path in sorted(folder.glob("*.prof")):
        entries = pstats.Stats(str(path)).stats  # {(file, line, function): (calls, primitive, own, cumulative, ...)}
        named = [
            (file, f"{Path(file).name}:{line}({function})", row[2], row[3])
            for (file, line, function), row in entries.items()
        ]
        library = sorted((row[1:] for row in named if "/helmetlib/" in row[0]), key=lambda row: -row[2])
        own = sorted((row[1:] for row in named), key=lambda row: -row[1])
        print(f"profile {path.stem}")
        print("  helmetlib, cumulative s: " + "; ".join(f"{name} {total:.1f}" for name, _, total in library[:top]))
        print("  any, own s: " + "; ".join(f"{name} {seconds:.1f}" for name, seconds, _ in own[:top]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--faithful", action="store_true")
    parser.add_argument("--epochs", type=int, default=STUDY_EPOCHS)
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="default: all, as helmet-reports")
    parser.add_argument("--out", help="report folder (default: a temporary one)")
    parser.add_argument("--profile", action="store_true", help="profile every stage's kernel (slower)")
    args, passthrough = parser.parse_known_args()

    dataset = load_run_data(args.data)
    precision = backbone_precision()
    ips = {"float32": backbone_images_per_second(dataset.images, args.weights, "float32")}
    if precision != "float32":
        ips[precision] = backbone_images_per_second(dataset.images, args.weights, precision)
    fastest = max(ips.values())
    one_pass = len(dataset) / fastest
    print(f"processor: {cpu_name()}; backbone precision {precision}")
    print(f"backbone images/s: {', '.join(f'{k} {v:.2f}' for k, v in ips.items())}")
    print(f"one backbone pass over {len(dataset)} images at the faster precision: {one_pass:.1f}s")

    out = Path(args.out or tempfile.mkdtemp(prefix="helmet-bench-"))
    cache = Path(tempfile.mkdtemp(prefix="helmet-bench-cache-"))  # cold cache: features are computed in the run
    command = [
        sys.executable,
        "-m",
        "helmetlib.commands.reports",
        "--data",
        args.data,
        "--weights",
        args.weights,
        "--out",
        str(out),
        "--run-id",
        "bench",
        "--epochs",
        str(args.epochs),
        "--models",
        args.models,
        "--cache-dir",
        str(cache),
        *(["--faithful"] if args.faithful else []),
        *passthrough,
    ]
    timings = out / "timings.jsonl"
    environment = {**os.environ, TIMINGS_ENV: str(timings)}
    if args.profile:
        environment[PROFILE_ENV] = str(out / "profiles")
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    memory = PeakMemory(process.pid)
    _, errors = process.communicate()
    wall = time.perf_counter() - started
    (out / "helmet-reports.stderr").write_text(errors)  # what an operator's log gets: checked for C++ log lines
    if process.returncode != 0:
        print(errors[-3000:], file=sys.stderr)
        return process.returncode
    record = RunRecord.read(out / "bench" / "run.json")

    precisions = sorted({result.precision for result in record.models.values() if result.mode != "direct"})
    print(
        f"pipeline ({'faithful' if args.faithful else 'fast'}, {args.epochs} epochs, feature precision "
        f"{precisions}, {record.config.repeats} repeat(s)): {wall:.1f}s wall"
    )
    print_stage_table(record.stage_seconds, timings, one_pass, wall)
    print(f"peak RSS (runner + kernels): {memory.peak / 2**30:.2f} GiB")
    print_epoch_seconds(record, timings)
    if args.faithful and args.epochs < STUDY_EPOCHS:
        backbone_models = [name for name in args.models.split(",") if name != "cnn"]
        per_epoch = len(backbone_models) * (record.split.train + record.split.validation) / ips["float32"]
        if "cnn" in record.models:  # the CNN trains the same way in both modes; its seconds are an upper bound
            per_epoch += record.models["cnn"].train_seconds / args.epochs
        estimate = wall + (STUDY_EPOCHS - args.epochs) * per_epoch
        print(
            f"extrapolated faithful {STUDY_EPOCHS}-epoch wall time: {estimate:.0f}s "
            f"(+{per_epoch:.0f}s per epoch: train + validation images through float32 VGG16 for "
            f"{len(backbone_models)} models, plus the CNN's seconds per epoch)"
        )
    for name, result in record.models.items():
        accuracy = result.summary["accuracy"]
        print(
            f"  {name:17s} validation accuracy {accuracy.mean:.3f} ± {accuracy.std:.3f} over {len(result.repeats)} "
            f"repeat(s), deployed {result.validation.accuracy:.3f} ({result.mode}, {result.train_seconds:.0f}s)"
        )
    selection = record.selection
    if selection and selection.selected_model:
        print(
            f"selected {selection.selected_model}: test accuracy {selection.test_intervals['accuracy'].text()}, "
            f"bare-head recall {selection.test_intervals['bare_head_recall'].text()}"
        )
    size = sum(path.stat().st_size for path in (out / "bench").rglob("*") if path.is_file())
    print(f"run folder size: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)")
    print(f"helmet-reports stderr: {len(errors.splitlines())} line(s), in {out / 'helmet-reports.stderr'}")
    if args.profile:
        print_profiles(out / "profiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
