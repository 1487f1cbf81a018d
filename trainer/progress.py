"""The rich progress bar both training loops show on stderr: step, loss, learning rate and throughput."""

from __future__ import annotations


def training_bar(label: str, rate_format: str, enabled: bool, total: int, completed: int):
    """A started (Progress, task id) pair, or None when disabled.

    `rate_format` renders the throughput field, e.g. "{task.fields[rate]:.1f} pairs/s".
    """
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  " + rate_format),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task(label, total=total, completed=completed, loss=float("nan"), lr=0.0, rate=0.0)
    progress.start()
    return progress, task
