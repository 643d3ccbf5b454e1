"""`helmet-reports clean`: delete old runs and the cache entries no kept run uses; a dry run unless `--apply`.

Never deleted: the run `latest` points to, a run still in progress (its process alive), and cache entries that a
kept run's model cards (or any other folder's cards under the output folder, e.g. interactive notebook runs)
refer to. A feature-cache entry is used by a run when its data hash and backbone fingerprint are those of one
of the run's backbone models; a backbone in the store when a card names it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from helmetlib.features import BACKBONES_FOLDER, FEATURES_FOLDER
from helmetlib.runs import ReportsFolder, RunRecord, process_alive


@dataclass
class CleanPlan:
    """What `clean` deletes (or would delete) and what it keeps."""

    runs: list[tuple[Path, RunRecord | None]] = field(default_factory=list)
    cache_files: list[Path] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(_size(path) for path, _ in self.runs) + sum(_size(path) for path in self.cache_files)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(child.stat().st_size for child in path.rglob("*") if child.is_file() and not child.is_symlink())


def plan(
    out: ReportsFolder, *, keep: int | None = None, older_than_days: float | None = None, cache_dir: Path | None = None
) -> CleanPlan:
    """Which runs and cache files `clean` would delete with these options (nothing is touched)."""
    result = CleanPlan()
    latest = out.latest_run_id()
    now = time.time()
    runs = [(folder, record) for folder, record in out.runs() if record.status != "running"]
    in_progress = [folder for folder, record in out.runs() if record.status == "running"]
    selecting = keep is not None or older_than_days is not None
    for position, (folder, record) in enumerate(runs):
        age_days = (now - datetime.fromisoformat(record.started).timestamp()) / 86400
        too_many = keep is None or position >= keep
        too_old = older_than_days is None or age_days > older_than_days
        if record.run_id == latest or not selecting or not (too_many and too_old):
            result.kept_runs.append(record.run_id)
        else:
            result.runs.append((folder.path, record))
    for stale in out.path.glob(".tmp-*"):  # a run killed hard (SIGKILL) leaves its work folder behind
        if stale.is_dir() and not _alive(stale):
            result.runs.append((stale, None))
    if in_progress:
        result.notes.append(f"{len(in_progress)} run(s) in progress: the cache is left as it is")
        return result
    deleted = {path for path, _ in result.runs}
    result.cache_files = _unused_cache_files(out, cache_dir or out.default_cache, deleted)
    return result


def _alive(work: Path) -> bool:
    try:
        pid = json.loads((work / "run.json").read_text()).get("pid")
    except (OSError, ValueError):
        return False
    return bool(pid) and process_alive(pid)


def _unused_cache_files(out: ReportsFolder, cache: Path, deleted: set[Path]) -> list[Path]:
    used_pairs, used_backbones = set(), set()
    for card_file in out.path.rglob("models/*.card.json"):
        if any(parent in deleted for parent in card_file.parents):
            continue
        try:
            card = json.loads(card_file.read_text())
        except (OSError, ValueError):
            continue
        backbone = card.get("backbone") or {}
        if backbone:
            used_backbones.add(Path(backbone.get("weights_file", "")).name)
            used_pairs.add((card.get("training_data", {}).get("content_hash"), backbone.get("fingerprint")))
    unused = []
    for key_file in sorted((cache / FEATURES_FOLDER).glob("features-*.json")):
        try:
            key = json.loads(key_file.read_text())
        except (OSError, ValueError):
            key = {}
        if (key.get("data"), key.get("weights")) not in used_pairs:
            unused += [key_file.with_suffix(".npy"), key_file, key_file.with_suffix(".lock")]
    for weights in sorted((cache / BACKBONES_FOLDER).glob("*.weights.h5")):
        if weights.name not in used_backbones:
            unused.append(weights)
    return [path for path in unused if path.exists()]


def apply(plan_: CleanPlan) -> None:
    """Delete what the plan lists."""
    for path, _ in plan_.runs:
        shutil.rmtree(path, ignore_errors=True)
    for path in plan_.cache_files:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="helmet-reports clean",
        description="Delete old runs and unused cache entries (a dry run unless --apply). Never deletes the latest "
        "run or a run in progress.",
    )
    parser.add_argument("--out", default="reports", help="the output folder of helmet-reports (default: reports)")
    parser.add_argument("--keep", type=int, help="keep the newest N runs")
    parser.add_argument("--older-than", type=float, metavar="DAYS", help="delete only runs older than DAYS")
    parser.add_argument("--cache-dir", help="the cache folder (default: OUT/.cache)")
    parser.add_argument("--apply", action="store_true", help="delete (default: only list what would go)")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep < 0 or args.older_than is not None and args.older_than < 0:
        print("helmet-reports clean: error: --keep and --older-than must not be negative", file=sys.stderr)
        return 2
    out = ReportsFolder(args.out)
    if not out.path.is_dir():
        print(f"helmet-reports clean: error: {out.path}: no such output folder", file=sys.stderr)
        return 2
    with out.lock():
        todo = plan(
            out,
            keep=args.keep,
            older_than_days=args.older_than,
            cache_dir=Path(args.cache_dir).resolve() if args.cache_dir else None,
        )
        verb = "deleting" if args.apply else "would delete"
        if not args.apply:
            print("helmet-reports clean: dry run, nothing deleted (add --apply to delete)")
        for path, record in todo.runs:
            what = f"{record.status}, started {record.started}" if record else "abandoned work folder"
            print(f"  {verb} run {path.name} ({what}, {_size(path) / 2**20:.1f} MB)")
        for path in todo.cache_files:
            print(f"  {verb} cache file {path.name} ({_size(path) / 2**20:.1f} MB)")
        for note in todo.notes:
            print(f"  note: {note}")
        print(
            f"  keeping {len(todo.kept_runs)} run(s); {'freed' if args.apply else 'would free'} "
            f"{todo.bytes / 2**20:.1f} MB"
        )
        if args.apply:
            apply(todo)
            from helmetlib.pages import runs_index

            out.index_page.write_text(runs_index(out), encoding="utf-8")
    return 0
