"""What every ``docqa`` command shares: the consoles, settings, a progress bar, errors.

Commands print results on ``out`` (stdout) and progress and errors on ``err`` (stderr), so
``docqa ask --json`` and friends can be piped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qa.errors import DocqaError
from qa.settings import Settings

out = Console()
err = Console(stderr=True)


def load_settings(data_dir: Path | None) -> Settings:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Settings(data_dir=data_dir) if data_dir else Settings()


@contextmanager
def progress_bar(first: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr, driven by the ``(done, total, what)`` callbacks services take."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(first, total=None)

        def update(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=what[-40:])

        yield update


@contextmanager
def stage_progress_bar(first: str) -> Iterator[Callable[[str, int, int], None]]:
    """The same bar for the evaluations, whose callbacks say ``(stage, done, total)``."""
    with progress_bar(first) as update:

        def on_progress(stage: str, done: int, total: int) -> None:
            update(done, total, stage)

        yield on_progress


class DocqaGroup(click.Group):
    """Maps docqa's own errors to a one-line message and exit status 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DocqaError as exc:
            err.print(f"[red]error:[/red] {exc}")
            sys.exit(1)
