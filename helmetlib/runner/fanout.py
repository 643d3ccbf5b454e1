"""The model notebooks of a run fanned out on Dask: an embedded `distributed.LocalCluster` (`--workers N`) or an
existing cluster (`--scheduler tcp://HOST:PORT`).

After the EDA the model notebooks are independent: each is one task that runs papermill on a worker. Local
workers are processes with one thread each, and TensorFlow in their kernels gets `cores // N` threads, so N
workers share the machine's cores instead of oversubscribing them. A remote cluster must see the run folder and
the cache at the same paths (shared storage); that is checked on every worker before any task runs. A failed task
fails the run as a sequential failure does, and the tasks not yet finished are cancelled.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from helmetlib.core.env import PROGRESS_ENV, THREADS_ENV
from helmetlib.run.folder import RunFolder


def run_model_stages(
    stages, work: RunFolder, progress, *, kernel: str, timeout: int, workers: int, scheduler: str | None
) -> list[str]:
    """Run the model `stages` as Dask tasks; print one line per finished task; return the failures."""
    from distributed import Client, LocalCluster, as_completed

    from helmetlib.runner.engine import NotebookFailed

    threads = max(1, (os.cpu_count() or 1) // workers) if not scheduler else 0
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,  # cancellations after a failure are expected, not news for stderr
        )
        client = Client(cluster)
    failures: list[str] = []
    try:
        _check_workers_see(client, work)
        progress_file = os.environ.get(PROGRESS_ENV, "")
        futures = {
            client.submit(
                _run_stage,
                stage,
                str(work.path),
                kernel,
                timeout,
                progress_file,
                threads,
                pure=False,
                key=f"helmetlib-{work.path.name}-{stage.stem}",
            ): stage
            for stage in stages
        }
        workers = len(client.nthreads())  # asked of the scheduler now: `scheduler_info()` may predate a worker
        print(f"[dask] {len(futures)} model notebooks on {workers} worker(s)", flush=True)
        for future in as_completed(futures):
            stage = futures[future]
            seconds, failure = future.result()
            progress.finished(stage.label, seconds, failed=failure is not None)
            if failure:
                failures.append(failure)
                for other in futures:
                    if not other.done():
                        other.cancel()
                break
    except NotebookFailed as error:
        failures.append(str(error))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return failures


def _check_workers_see(client, work: RunFolder) -> None:
    """`NotebookFailed` naming a worker that cannot see the run folder or the cache at the runner's paths."""
    from helmetlib.runner.engine import NotebookFailed

    blind = client.run(_missing_paths, [str(work.path), str(work.read_config().cache_dir)])
    for address, missing in blind.items():
        if missing:
            raise NotebookFailed(
                f"Dask worker {address} cannot see {', '.join(missing)}: the run folder (--out) and the cache "
                "(--cache-dir) must be on storage every worker sees, at the same paths"
            )


def _missing_paths(paths: list[str]) -> list[str]:
    return [path for path in paths if not Path(path).is_dir()]


def _run_stage(stage, work_path: str, kernel: str, timeout: int, progress_file: str, threads: int):
    """On a worker: execute one notebook; (seconds, None) or (seconds, one-line failure)."""
    from helmetlib.runner.engine import NotebookFailed, execute_notebook
    from helmetlib.runner.kernel import ensure_kernel

    if progress_file:
        os.environ[PROGRESS_ENV] = progress_file
    if threads:
        os.environ[THREADS_ENV] = str(threads)
    started = time.perf_counter()
    try:
        ensure_kernel()
        execute_notebook(stage, RunFolder(Path(work_path)), kernel=kernel, timeout=timeout)
    except NotebookFailed as error:
        return time.perf_counter() - started, str(error)
    return time.perf_counter() - started, None
