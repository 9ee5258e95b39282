"""Rows of the jobs table: the reads and conditional writes the job services share.

Like ``catalog``, every function takes an open ``Session`` and leaves committing to the
caller; there are no access checks here. A job changes state only through ``change_job``,
one UPDATE conditional on its current status, so of two processes racing (a runner
finishing, a user cancelling) whichever gets there first wins and neither overwrites the
other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from qa.store.db.models import Job, utcnow


def change_job(
    session: Session,
    job_id: str,
    statuses: Sequence[str],
    *,
    kind: str | None = None,
    **values: Any,
) -> bool:
    """Set ``values`` (and ``updated_at``) if the job's status is one of ``statuses`` (and
    its kind is ``kind``); whether it was."""
    q = update(Job).where(Job.id == job_id, Job.status.in_(statuses))
    if kind is not None:
        q = q.where(Job.kind == kind)
    result = session.execute(q.values(**{"updated_at": utcnow(), **values}))
    return bool(getattr(result, "rowcount", 0))


def job_state(session: Session, job_id: str) -> tuple[str, bool] | None:
    """(status, cancel requested) of a job, or None if it is gone."""
    row = session.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).first()
    return None if row is None else (row[0], bool(row[1]))


def count_jobs(session: Session, kind: str, user_id: int | None, statuses: Sequence[str]) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == kind, Job.user_id == user_id, Job.status.in_(statuses))
        )
        or 0
    )


def list_jobs(session: Session, kind: str, user_id: int | None, limit: int) -> Sequence[Job]:
    """A user's jobs of one kind, newest first."""
    return session.scalars(
        select(Job)
        .where(Job.kind == kind, Job.user_id == user_id)
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
    ).all()


def job_ids(session: Session, kind: str, statuses: Sequence[str]) -> list[str]:
    """Ids of the jobs of one kind in one of ``statuses``, oldest first."""
    q = select(Job.id).where(Job.kind == kind, Job.status.in_(statuses))
    return list(session.scalars(q.order_by(Job.created_at)).all())


def delete_jobs_citing(session: Session, collection_id: int, doc_ids: Sequence[str]) -> int:
    """Delete the collection's jobs whose stored result names one of ``doc_ids``.

    A document's own jobs go with it (ON DELETE CASCADE); a collection summary holds
    statements taken from each of its documents, and the name of each one it skipped (not
    indexed yet, failed), so deleting a document must take it too.
    """
    gone = set(doc_ids)
    jobs = session.scalars(
        select(Job).where(Job.collection_id == collection_id, Job.document_id.is_(None))
    ).all()
    doomed = [job for job in jobs if _named_documents(job) & gone]
    for job in doomed:
        session.delete(job)
    return len(doomed)


def _named_documents(job: Job) -> set[str]:
    """The documents a collection summary's result quotes or lists as skipped."""
    result = (job.payload or {}).get("result")
    if not isinstance(result, dict):
        return set()
    parts = [p for key in ("documents", "skipped") if isinstance(p := result.get(key), list)]
    return {str(d.get("document_id")) for part in parts for d in part if isinstance(d, dict)}
