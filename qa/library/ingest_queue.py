"""What the web app may ask of ingestion, without knowing how ingestion runs.

The web app never parses a document (``web`` imports only ``qa``). It hands uploads to an
``IngestQueue``; the composition root (``docqa serve``) decides what sits behind it: an
in-process thread pool in the embedded default, Celery workers when a broker is configured.
Whatever runs it, an accepted upload is first stored and registered as ``queued`` in the
metadata DB, so a crash or a lost task leaves a row the queue can pick up again.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from qa.messages import N_


@dataclass(frozen=True)
class Upload:
    """One file of an upload (a zip archive becomes one ``Upload`` per member)."""

    name: str
    #: None when the file was refused before it got a document row (unreadable archive)
    document_id: str | None
    status: str
    #: False when the same bytes were already in the collection: nothing new was created
    created: bool
    error: str | None = None


class IngestQueue(abc.ABC):
    """Accepts uploads and index work; processing happens elsewhere, later."""

    @abc.abstractmethod
    def submit(self, collection: str, stream: IO[bytes], name: str) -> list[Upload]:
        """Store the bytes, register ``queued`` documents and schedule their processing."""

    @abc.abstractmethod
    def retry(self, document_ids: Sequence[str]) -> None:
        """Process failed (or stuck) documents again."""

    @abc.abstractmethod
    def reindex(self, collection_id: int) -> None:
        """Republish a collection's indexes from the DB (after deletes, or on request)."""

    def summarize(self, job_id: str) -> None:
        """Run a summary job (a row in the jobs table) in the background."""
        from qa.errors import Unavailable

        raise Unavailable(N_("summaries are not available in this process"))

    def sync_now(self, source_id: int) -> None:
        """Scan a synced folder now, in the background (``docqa sync run`` by hand)."""
        from qa.errors import Unavailable

        raise Unavailable(N_("synced folders are not scanned in this process"))

    def depth(self) -> int:
        """Documents waiting or being processed (for metrics); -1 when unknown."""
        return -1

    def stuck_processing(self) -> int:
        """Documents left ``processing`` that no worker is on any more (its worker died and
        nothing has handed them on yet); -1 when unknown. For /readyz and /metrics."""
        return -1

    def close(self) -> None:  # noqa: B027 - optional hook, most queues hold nothing
        """Stop accepting work and release threads or connections."""
