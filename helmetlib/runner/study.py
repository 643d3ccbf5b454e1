"""`helmet-reports`: run the study notebooks with papermill and write one browsable, nightly-safe run folder.

Three steps. `prepare` checks everything that can be checked before a kernel starts (options, run id, output
folder, data, split, notebook pairing; exit 2 and nothing written when one fails), resolves the weights once and
writes the run's settings (`config.json`). `execute` runs 00_eda, 10_model once per model (on Dask workers with
`--workers` / `--scheduler`) and 20_comparison in `<out>/.tmp-<run-id>/`, each with the parameters of its
parameters cell taken from the config. `finish` writes `run.json` and the run page, compares the run with the
previous one, renames the folder into place (`<run-id>`, or `<run-id>.failed` for a failed or interrupted
run) and updates `latest` and the runs index under a lock. Every failure (a raising cell, a cell past
`--timeout`, a dead kernel, SIGTERM, SIGINT) becomes a record with a one-line reason, never a traceback.
`helmet-reports clean` deletes old runs (see `retention`). The notebooks themselves are executed by `engine`.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from helmetlib.core import settings
from helmetlib.core.progress import Progress, ProgressRelay
from helmetlib.core.records import RecordError, output_folder_problem, write_text
from helmetlib.core.weights import WeightsFallbackWarning
from helmetlib.data.dataset import DatasetError, load_run_data
from helmetlib.data.splits import read_groups
from helmetlib.evaluation.results import DataInfo
from helmetlib.models.features import register_cache_user
from helmetlib.reports.pages import run_page, runs_index
from helmetlib.run.config import (
    CODE_PAGE_SUFFIX,
    COMPLETED,
    NOTEBOOKS,
    NOTHING_DEPLOYED,
    ParameterError,
    RunConfig,
    check_run_id,
    default_run_id,
    now,
    package_versions,
)
from helmetlib.run.folder import LatestPointer, ReportsFolder, RunFolder, RunRecord, process_start_time
from helmetlib.run.split import record_split, run_split
from helmetlib.runner.engine import (
    NOTEBOOKS_DIR,
    NotebookFailed,
    Stage,
    execute_notebook,
    kernels_started_ahead,
    plan_stages,
    stale_pairing,
    stop_kernel,
)
from helmetlib.runner.kernel import ensure_kernel

EXIT_FAILED, EXIT_USAGE, EXIT_REGRESSION, EXIT_NOTHING_DEPLOYED = 1, 2, 3, 4
EXIT_SIGNAL = {signal.SIGTERM: 143, signal.SIGINT: 130}


class Interrupted(BaseException):
    """The run received SIGTERM or SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def make_config(args: argparse.Namespace, out: ReportsFolder, run_id: str) -> RunConfig:
    """The run's settings from the command line (relative paths against the working directory)."""
    parameters = {**settings.parameters_from(args), "CACHE_DIR": args.cache_dir or str(out.default_cache)}
    return RunConfig.from_parameters(run_id=run_id, origin="helmet-reports", base=Path.cwd(), **parameters)


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=NOTEBOOKS_DIR.parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def _fail(message: str) -> int:
    print(f"helmet-reports: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _scheduler_problem(address: str) -> str | None:
    """Why the Dask scheduler at `address` (tcp://HOST:PORT) cannot be used, checked with one connection, or None."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None:
        return f"--scheduler {address!r}: not an address of the form tcp://HOST:PORT"
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as error:
        return f"--scheduler {address}: no scheduler answers there ({error.strerror or error})"
    return None


RUN_MEGABYTES = (20, 10)  # a run's folder: about 20 MB plus 10 MB per model (a helmet-dev run of 6 models: 55 MB)


def _space_problem(out: Path, models: int) -> str | None:
    """Why a run of `models` models will not fit on the disk of `out`, or None."""
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    free_mb = shutil.disk_usage(existing).free / 2**20
    needed_mb = RUN_MEGABYTES[0] + RUN_MEGABYTES[1] * models
    if free_mb < needed_mb:
        return f"--out {out}: {free_mb:.0f} MB free on its disk; a run of {models} models needs about {needed_mb} MB"
    return None


def _capped_workers(workers: int, models: int) -> int:
    """`--workers` capped at the number of model notebooks and at the memory left (about 3 GiB per worker)."""
    import psutil

    by_memory = max(1, int(psutil.virtual_memory().available // (3 * 2**30)))
    capped = min(workers, models, by_memory)
    if capped < workers:
        reason = f"{models} model notebooks" if capped == models else f"memory for {by_memory} (about 3 GiB each)"
        print(f"helmet-reports: --workers {workers} capped at {capped} ({reason})", file=sys.stderr)
    return capped


def _checked_settings(args: argparse.Namespace, out: ReportsFolder, run_id: str, notebooks: Path):
    """(config, dataset, split) once everything that can be checked before a folder is written holds: the
    notebooks and their pairing, the settings and weights, the data and groups, the room on the disk. Raises
    `ParameterError`, `DatasetError`, `ValueError` or `OSError` with one line otherwise."""
    for source in (notebooks / f"{stem}.py" for stem in NOTEBOOKS):
        if not source.is_file():
            raise ParameterError(f"{source}: notebook not found")
        stale = stale_pairing(source)
        if stale:
            raise ParameterError(stale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WeightsFallbackWarning)
        config = make_config(args, out, run_id)
    for warning in caught:  # the fallback is loud, in one line; every page carries its banner too
        print(f"helmet-reports: warning: {warning.message}", file=sys.stderr)
    dataset = load_run_data(config.data_dir, demo_size=config.demo_size, image_size=config.image_size)
    if config.groups_csv:
        read_groups(config.groups_csv, config.group_column, expected_rows=len(dataset))
    if args.workers > 1 and not args.scheduler:
        args.workers = _capped_workers(args.workers, len(config.models))
    problem = _space_problem(out.path, len(config.models))
    if problem:
        raise ParameterError(problem)
    return config, dataset, run_split(config, dataset)


def run(args: argparse.Namespace) -> int:
    """Run the whole study; returns the process exit status."""
    out = ReportsFolder(args.out)
    cache_problem = output_folder_problem(Path(args.cache_dir), "--cache-dir") if args.cache_dir else None
    problem = output_folder_problem(out.path, "--out") or cache_problem
    if not problem and args.scheduler:
        problem = _scheduler_problem(args.scheduler)
    if problem:
        return _fail(problem)
    if args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    notebooks = Path(args.notebooks)
    try:
        run_id = check_run_id(args.run_id) if args.run_id is not None else default_run_id()
        final, failed = out.run(run_id), out.failed(run_id)
        config, dataset, parts = _checked_settings(args, out, run_id, notebooks)
    except (ParameterError, DatasetError, ValueError, OSError) as error:
        return _fail(str(error))
    if final.path.exists() or failed.path.exists():
        return _fail(f"run folder {final.path} already exists; choose another --run-id")
    work = out.work(run_id)
    if work.path.exists():
        try:
            running = RunRecord.read(work.record_file)
        except RecordError:
            running = None
        if running and running.in_progress:
            return _fail(f"run {run_id} is in progress (process {running.pid}); choose another --run-id")
        shutil.rmtree(work.path)  # a work folder abandoned by a killed run, checked to lie inside --out
    out.path.mkdir(parents=True, exist_ok=True)
    work.path.mkdir()
    config.write(work.config_file)
    record_split(work, config, dataset, parts)  # every notebook reads this split
    register_cache_user(config.cache_dir, out.path)  # `clean` in any folder sharing the cache keeps what this needs
    record = RunRecord(
        run_id=run_id,
        status="running",
        started=now(),
        config=config,
        pid=os.getpid(),
        pid_started=process_start_time(),
        data=DataInfo.of(dataset, config.data_dir),
        split=parts.record(),
        versions=package_versions(),
        git_commit=git_commit(),
        host={"machine": platform.machine(), "cpus": os.cpu_count()},
    )
    record.write(work.record_file)
    return _execute_and_finish(args, out, work, record, notebooks)


def _execute_and_finish(args, out: ReportsFolder, work: RunFolder, record: RunRecord, notebooks: Path) -> int:
    config = record.config
    stages = plan_stages(config, work, notebooks)
    previous = next((r for _, r in out.runs() if r.status == "ok"), None)
    progress = Progress(len(stages), previous.stage_seconds if previous else {})
    relay = ProgressRelay(work.progress_file)
    failures: list[str] = []
    status, stage_now, exit_code = "ok", None, 0
    _log_messages_to(work.log_file)
    handlers = {sig: signal.signal(sig, _raise_interrupted) for sig in EXIT_SIGNAL}
    try:
        kernel = ensure_kernel()
        failures = _execute(args, stages, work, progress, kernel)
        if failures:
            status, exit_code = "failed", EXIT_FAILED
    except Interrupted as interruption:
        status, exit_code = "interrupted", EXIT_SIGNAL[interruption.signum]
        failures.append(f"interrupted by {interruption}")
        stage_now = _current_stage(progress, stages)
    except KeyboardInterrupt:
        status, exit_code = "interrupted", EXIT_SIGNAL[signal.SIGINT]
        failures.append("interrupted by SIGINT")
        stage_now = _current_stage(progress, stages)
    except Exception as error:  # a failure of the runner itself is recorded like a notebook's
        status, exit_code = "failed", EXIT_FAILED
        failures.append(f"{type(error).__name__}: {error}")
        work.log_file.open("a").write(traceback.format_exc())
    finally:
        for sig in EXIT_SIGNAL:
            signal.signal(sig, signal.SIG_IGN)  # finishing the record must not be interrupted
        relay.close()
        _stop_kernels()
    try:
        record = _finish(out, work, record, status, failures, stage_now, progress)
    except OSError as error:  # a full disk, a file-size limit, a folder gone read-only: said, never a traceback
        return _finish_failed(out, work, record, error)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    destination = out.run(record.run_id) if record.status in COMPLETED else out.failed(record.run_id)
    if record.status not in COMPLETED:
        print(f"helmet-reports: run {record.status}: {failures[0]} (see {destination.page})", file=sys.stderr)
        return exit_code
    print(f"helmet-reports: done in {record.total_seconds:.0f}s: {destination.page}")
    selection = record.selection
    if record.status == "nothing_deployed":
        print(f"helmet-reports: nothing deployed: {NOTHING_DEPLOYED}; latest unchanged", file=sys.stderr)
        return EXIT_NOTHING_DEPLOYED
    test = selection.test_intervals
    print(
        f"deployed: {selection.deployed}"
        + (f" (with the selected {selection.selected_model})" if selection.deployed != selection.selected_model else "")
        + f" at threshold {selection.threshold.value:.3f}; test accuracy "
        f"{test['accuracy'].text()}, bare-head recall {test['bare_head_recall'].text()}"
    )
    regressions = record.comparison_with_previous.regressions if record.comparison_with_previous else []
    for line in regressions:
        print(f"REGRESSION: {line}", file=sys.stderr)
    return EXIT_REGRESSION if regressions and args.fail_on_regression else 0


def _log_messages_to(log_file: Path) -> None:
    """Send this process's log records (nbclient's "Kernel died while waiting...", asyncio's "Task exception was
    never retrieved" after an interruption killed the kernels) to `run.log`, never to the terminal: the runner's
    own lines are the one account of the run. The file stays open, so the record survives the folder's rename."""
    handler = logging.StreamHandler(log_file.open("a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _current_stage(progress: Progress, stages: list[Stage]) -> str | None:
    return stages[progress.count - 1].label if 0 < progress.count <= len(stages) else None


def _stop_kernels() -> None:
    """End every process this run started (kernels left behind by an interruption), except multiprocessing's
    resource tracker (Dask's LocalCluster starts it): it ignores SIGTERM by design, ends with this process, and
    waiting for it cost every `--workers` run 5 s."""
    import psutil

    children = [
        child
        for child in psutil.Process().children(recursive=True)
        if "multiprocessing.resource_tracker" not in " ".join(_command_line(child))
    ]
    for child in children:
        child.terminate()
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()


def _command_line(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:  # ended meanwhile, or not ours to read
        return []


def _execute(args, stages: list[Stage], work: RunFolder, progress: Progress, kernel: str) -> list[str]:
    """Run the stages until one fails (the notebooks after it are skipped and said). Returns the failures.

    One after another, each stage's kernel is started while the stage before it runs (`kernels_started_ahead`),
    and a stage's HTML pages are written by a thread while the next one runs (all written when this returns; a
    page that cannot be written fails the run, raised here); with `--workers` / `--scheduler` the model notebooks
    run as Dask tasks, each starting its own, while the comparison's kernel, started during the EDA, waits for
    them."""
    failures: list[str] = []
    pages, written = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages"), []

    def attempt(stage: Stage, manager=None) -> None:
        def write_pages(*call) -> None:
            written.append(pages.submit(*call))

        try:
            progress.run(
                stage.label,
                lambda: execute_notebook(
                    stage, work, kernel=kernel, timeout=args.timeout, manager=manager, write_pages=write_pages
                ),
            )
        except NotebookFailed as error:
            failures.append(str(error))
            print(f"FAILED {error}", file=sys.stderr, flush=True)

    comparison = stages[-1]
    fan_out = args.workers > 1 or args.scheduler
    in_order = [stages[0], comparison] if fan_out else stages
    with pages, closing(kernels_started_ahead(in_order, work, kernel=kernel)) as started:
        for stage, manager in started:
            if stage is comparison and fan_out and not failures:
                failures += _fanned_out(args, stages[1:-1], work, progress, kernel)
            if failures:  # a failed notebook ends the run, as a failed Dask task cancels the others
                stop_kernel(manager)  # started for a notebook that will not run
                never_started = [other.stem for other in stages if not work.started(other.stem)]
                print(f"skipping {', '.join(never_started)}: earlier notebooks failed", flush=True)
                break
            attempt(stage, manager)
    for page in written:  # every page written (the thread is done); one that could not be fails the run
        page.result()
    return failures


def _fanned_out(args, stages: list[Stage], work: RunFolder, progress: Progress, kernel: str) -> list[str]:
    """The model `stages` as Dask tasks (`--workers` / `--scheduler`); returns their failures."""
    from helmetlib.runner.fanout import run_model_stages

    return run_model_stages(
        stages,
        work,
        progress,
        kernel=kernel,
        timeout=args.timeout,
        workers=args.workers,
        scheduler=args.scheduler,
    )


def _finish(out, work, record, status, failures, stage_now, progress) -> RunRecord:
    """Write the record and the page, rename the folder into place, then update latest and the index."""
    from helmetlib.runner.regressions import compare_with_previous

    config = record.config
    results = {}
    try:
        results = work.results(config.models)
        selection, audit = work.read_selection(), work.read_audit()
    except RecordError as error:
        status, selection, audit = "failed", None, None
        failures = [*failures, str(error)]
    failed_stage = stage_now or next((f.split(":")[0] for f in failures), None)
    if status == "ok" and (selection is None or not selection.deployed):
        status = "nothing_deployed"
    record = replace(
        record,
        status=status,
        finished=now(),
        stage=failed_stage if status not in COMPLETED else None,
        reason=failures[0] if failures else None,
        failures=tuple(failures),
        pid=None,
        pid_started=None,
        stage_seconds=progress.seconds,
        total_seconds=round(progress.elapsed(), 2),
        models=results,
        selection=selection if status in COMPLETED else None,
        audit=audit,
    )
    if status in COMPLETED:
        record = replace(record, comparison_with_previous=compare_with_previous(out, work, record))
    for folder, reason in out.scan()[1]:
        print(f"helmet-reports: warning: run {folder.name} skipped: {reason}", file=sys.stderr)
    record.write(work.record_file)
    write_text(work.page, run_page(record, work))
    destination = out.run(record.run_id) if status in COMPLETED else out.failed(record.run_id)
    _point_notebooks_at(work, destination)
    work.path.rename(destination.path)
    with out.lock():
        if status == "ok":
            point_latest(out, record.run_id)
        try:
            write_text(out.index_page, runs_index(out))
        except Exception as error:  # the run is in place and recorded: a stale index must not fail it
            print(f"helmet-reports: warning: runs index not updated ({type(error).__name__}: {error})", file=sys.stderr)
    return record


def _finish_failed(out: ReportsFolder, work: RunFolder, record: RunRecord, error: OSError) -> int:
    """Finishing failed (the disk is full, a file is over the size limit...): mark the run failed with the file and
    the error, moved to `<run-id>.failed`; if even that cannot be written, remove the work folder."""
    reason = f"finishing the run failed: {error.filename or 'a file'}: {error.strerror or error}"
    failed = replace(record, status="failed", finished=now(), reason=reason, failures=(reason,), pid=None)
    work.page.unlink(missing_ok=True)  # maybe cut short by the error: no half page
    try:
        failed.write(work.record_file)
    except OSError:  # a full disk: the failed run's own outputs make room for its record
        for entry in work.path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry != work.log_file:
                entry.unlink(missing_ok=True)
    try:
        failed.write(work.record_file)
        work.path.rename(out.failed(record.run_id).path)
        where = out.failed(record.run_id).path
    except OSError:
        shutil.rmtree(work.path, ignore_errors=True)
        where = "removed: nothing could be written"
    print(f"helmet-reports: run failed: {reason} ({where})", file=sys.stderr)
    return EXIT_FAILED


def _point_notebooks_at(work: RunFolder, destination: RunFolder) -> None:
    """Give the executed notebooks (and their code pages) the run folder they will live in as `RUN_DIR`, so that
    a saved `.ipynb` re-runs as it is: papermill injected the work folder, which is renamed next."""
    for page in [*work.path.glob("*.ipynb"), *work.path.glob(f"*{CODE_PAGE_SUFFIX}")]:
        text = page.read_text(encoding="utf-8")
        if str(work.path) in text:
            write_text(page, text.replace(str(work.path), str(destination.path)))


def point_latest(out: ReportsFolder, run_id: str) -> None:
    """Move `latest.json` (and the `latest` symlink where the filesystem allows) to a successful run."""
    LatestPointer(run_id=run_id, path=run_id, updated=now()).write(out.latest_file)
    link = out.latest_link
    temporary = out.path / f".latest-{os.getpid()}"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run_id, target_is_directory=True)
        temporary.replace(link)  # atomic: readers never see a missing link
    except OSError:
        pass  # latest.json is the portable pointer
