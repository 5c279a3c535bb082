"""Independent tasks of a report (``pimgpt paper``) run in this process or on a Dask cluster.

A report's points do not depend on one another, so they can run side by side: on an embedded
``LocalCluster`` (one single-threaded worker process per core, or ``workers``) or on a running
cluster (``scheduler``, ``dask scheduler`` / ``dask worker``, as for ``pimgpt sweep``,
docs/sweep.md). ``workers=1`` without a scheduler, or a single task, runs in the calling process:
no cluster to start for a run that cannot use one.

The results come back in the order of the tasks, whatever the order they finish in, and each
task computes the same numbers wherever it runs (every point compiles and simulates on its own;
the engine's memo changes only how fast), so a report does not depend on where it ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence


def in_process(n_tasks: int, workers: int | None, scheduler: str | None) -> bool:
    """Whether :func:`run_tasks` runs ``n_tasks`` in the calling process."""
    if scheduler:
        return False
    if workers is None:
        from pimgpt.apps.sweep_run import default_workers

        workers = default_workers()
    return n_tasks < 2 or workers == 1


def run_tasks(fn: Callable, tasks: Sequence[tuple], labels: Sequence[str], bar, *,
              workers: int | None = 1, scheduler: str | None = None) -> list:
    """``[fn(*args) for args in tasks]``, in this process or on a Dask cluster (module docstring).

    Parameters
    ----------
    fn : callable
        A module-level function (the workers import it by name).
    tasks : sequence of tuple
        The arguments of each call.
    labels : sequence of str
        What the progress bar shows for each task (as it starts here, as it ends on a cluster).
    bar : tqdm-like
        Advanced once per finished task.
    workers : int or None
        Worker processes of the embedded cluster (None: one per core; 1: this process); with
        ``scheduler``, how many workers to wait for.
    scheduler : str or None
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.

    Returns
    -------
    list
        The results in the order of ``tasks``. A task's exception is raised here (on a
        cluster: the first to fail; the cluster is closed before it leaves).
    """
    from pimgpt.apps.sweep_run import check_workers

    check_workers(workers, scheduler)
    if in_process(len(tasks), workers, scheduler):
        out = []
        for args, label in zip(tasks, labels, strict=True):
            bar.set_postfix_str(label)
            out.append(fn(*args))
            bar.update()
        return out
    from dask.distributed import as_completed

    from pimgpt.apps.sweep_run import dask_client

    run = uuid.uuid4().hex[:8]  # keys unique per run on a shared scheduler
    with dask_client(workers, scheduler) as client:
        futures = [client.submit(fn, *args, key=f"{fn.__name__}-{run}-{i}", pure=False)
                   for i, args in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            bar.set_postfix_str(labels[index[fut.key]])
            bar.update()
            if fut.status == "error":  # stop now: the report cannot be written
                fut.result()  # raises the task's exception
        return [f.result() for f in futures]
