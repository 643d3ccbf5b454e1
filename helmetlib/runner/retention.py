"""`helmet-reports clean`: delete old runs and the cache entries no kept run uses; a dry run unless `--apply`.

Only in a helmet-reports output folder (one with runs or a latest pointer), and only its own files: run folders
with a `run.json`, abandoned `.tmp-<id>` work folders with a `run.json`, cache entries. Never deleted: the run
`latest` points to, a run still in progress (its process alive, checked by id and start time), and cache entries
that a model card of a kept run refers to — in this folder, or in any other reports folder that uses the same
cache (each registers itself in the cache's `users/`). A feature-cache entry is used when its data hash and
backbone fingerprint are those of a card's backbone model; a backbone in the store when a card names it. `--keep N`
keeps the newest N finished (ok) runs and the failed ones newer than the oldest of them.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from helmetlib.core import cli
from helmetlib.core.records import RecordError, write_text
from helmetlib.deploy.cards import ModelCard
from helmetlib.models.features import BACKBONES_FOLDER, FEATURES_FOLDER, USERS_FOLDER, cache_users
from helmetlib.run.folder import ReportsFolder, RunFolder, RunRecord


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


def is_reports_folder(out: ReportsFolder) -> bool:
    """True for a folder helmet-reports writes: a latest pointer, or a run folder (or work folder) with `run.json`."""
    if out.latest_file.is_file():
        return True
    return any(RunFolder(entry).record_file.is_file() for entry in out.path.iterdir() if entry.is_dir())


def plan(
    out: ReportsFolder, *, keep: int | None = None, older_than_days: float | None = None, cache_dir: Path | None = None
) -> CleanPlan:
    """Which runs and cache files `clean` would delete with these options (nothing is touched)."""
    result = CleanPlan()
    latest = out.latest_run_id()
    now = time.time()
    every = out.runs()
    runs = [(folder, record) for folder, record in every if not record.in_progress]
    in_progress = [folder for folder, record in every if record.in_progress]
    selecting = keep is not None or older_than_days is not None
    ok_started = [record.started for _, record in runs if record.status == "ok"]
    oldest_kept = ok_started[keep - 1] if keep and len(ok_started) >= keep else None  # runs are newest first
    for folder, record in runs:
        age_days = (now - datetime.fromisoformat(record.started).timestamp()) / 86400
        too_many = keep is None or (oldest_kept is not None and record.started < oldest_kept) or keep == 0
        too_old = older_than_days is None or age_days > older_than_days
        if record.run_id == latest or not selecting or not (too_many and too_old):
            result.kept_runs.append(record.run_id)
        else:
            result.runs.append((folder.path, record))
    for stale in out.path.glob(".tmp-*"):  # a run killed hard (SIGKILL) leaves its work folder behind
        if stale.is_dir() and RunFolder(stale).record_file.is_file() and not _alive(stale):
            result.runs.append((stale, None))
    cache = cache_dir or out.default_cache
    users = [ReportsFolder(folder) for folder in cache_users(cache) if folder.resolve() != out.path]
    busy = in_progress + [folder for user in users for folder, record in user.runs() if record.in_progress]
    lost = cache_users(cache, missing=True)
    if lost:  # a moved folder's runs may still need the cache: nothing in it can be said unused
        result.notes.append(
            f"{len(lost)} reports folder(s) registered as users of the cache cannot be found (moved or deleted?): "
            f"{', '.join(map(str, lost))}; the cache is left as it is (a run in a moved folder registers it again; "
            f"for a folder deleted for good, remove its registration in {cache / USERS_FOLDER})"
        )
        return result
    if busy:
        result.notes.append(f"{len(busy)} run(s) in progress using the cache: the cache is left as it is")
        return result
    deleted = {path for path, _ in result.runs}
    result.cache_files = _unused_cache_files(out.path, [user.path for user in users], cache, deleted)
    if users:
        result.notes.append(
            f"cache shared with {', '.join(str(user.path) for user in users)}: their runs' entries kept"
        )
    return result


def _alive(work: Path) -> bool:
    try:
        return RunFolder(work).read_record().in_progress
    except RecordError:
        return False


def _unused_cache_files(own: Path, others: list[Path], cache: Path, deleted: set[Path]) -> list[Path]:
    """The cache files that no card needs: every card in `own` (even one whose run was copied from elsewhere), and
    the cards in the `others` folders sharing the cache whose backbone lies in this very cache."""
    used_pairs, used_backbones = set(), set()
    cards = [(card, True) for card in RunFolder.card_files_under(own)]
    cards += [(card, False) for folder in others for card in RunFolder.card_files_under(folder)]
    for card_file, ours in cards:
        if any(parent in deleted for parent in card_file.parents):
            continue
        try:
            card = ModelCard.read(card_file)
        except RecordError:
            continue  # a card that cannot be read makes its model unusable: it needs nothing
        backbone = card.backbone
        if backbone and (ours or Path(backbone.weights_file).resolve().parent.parent == cache.resolve()):
            used_backbones.add(Path(backbone.weights_file).name)
            used_pairs.add((card.training_data.content_hash, backbone.fingerprint))
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


def apply(plan_: CleanPlan) -> tuple[int, list[str]]:
    """Delete what the plan lists; (bytes freed, one line per path that could not be deleted, with the OS error)."""
    freed, errors = 0, []
    for path in [path for path, _ in plan_.runs] + plan_.cache_files:
        size = _size(path)
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as error:
            errors.append(f"{path}: {error.strerror or error}")
            continue
        freed += size
    return freed, errors


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(
        "helmet-reports clean",
        "Delete old runs and unused cache entries (a dry run unless --apply). Never deletes the latest run, a run "
        "in progress, or what another folder sharing the cache needs.",
        """examples:
  helmet-reports clean --keep 10                    # what would go
  helmet-reports clean --keep 10 --older-than 30 --apply
exit codes: 0 done; 1 something could not be deleted; 2 bad options or not a helmet-reports folder""",
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
    if not is_reports_folder(out):
        print(
            f"helmet-reports clean: error: {out.path}: not a helmet-reports output folder (no runs, no latest.json); "
            "nothing deleted",
            file=sys.stderr,
        )
        return 2
    cache_dir = Path(args.cache_dir).resolve() if args.cache_dir else None
    if not args.apply:  # a dry run reads only: no lock, so it works on a read-only folder
        return _report(plan(out, keep=args.keep, older_than_days=args.older_than, cache_dir=cache_dir), apply_=False)
    try:
        with out.lock():
            todo = plan(out, keep=args.keep, older_than_days=args.older_than, cache_dir=cache_dir)
            status = _report(todo, apply_=True)
            from helmetlib.reports.pages import runs_index

            write_text(out.index_page, runs_index(out))
    except OSError as error:
        print(f"helmet-reports clean: error: {out.path}: {error.strerror or error}", file=sys.stderr)
        return 1
    return status


def _report(todo: CleanPlan, *, apply_: bool) -> int:
    """Print the plan (deleting it with `apply_`) and return the exit status: 1 when a deletion failed."""
    verb = "deleting" if apply_ else "would delete"
    if not apply_:
        print("helmet-reports clean: dry run, nothing deleted (add --apply to delete)")
    for path, record in todo.runs:
        what = f"{record.status}, started {record.started}" if record else "abandoned work folder"
        print(f"  {verb} run {path.name} ({what}, {_size(path) / 2**20:.1f} MB)")
    for path in todo.cache_files:
        print(f"  {verb} cache file {path.name} ({_size(path) / 2**20:.1f} MB)")
    for note in todo.notes:
        print(f"  note: {note}")
    freed, errors = apply(todo) if apply_ else (todo.bytes, [])
    for error in errors:
        print(f"helmet-reports clean: could not delete {error}", file=sys.stderr)
    print(f"  keeping {len(todo.kept_runs)} run(s); {'freed' if apply_ else 'would free'} {freed / 2**20:.1f} MB")
    return 1 if errors else 0
