"""Operations: liveness, readiness (DB, indexes, model) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from qa.retrieval.publish import unpublished_chunks
from qa.store.db.models import Collection
from web.extensions import WebServices, services
from web.metrics import CONTENT_TYPE

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers requests (no dependency is checked: that is /readyz)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    checks: dict[str, Any] = {}
    ready = True
    try:
        with svc.db.session() as session:
            session.execute(text("SELECT 1"))
            keys = list(session.scalars(select(Collection)).all())
        checks["database"] = {"ok": True}
    except Exception as exc:  # any driver error means "not ready", with the reason
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        keys = []
        ready = False
    reader = svc.answers.retriever.reader
    published = [c.name for c in keys if reader.store.current_version(c.index_key) is not None]
    behind = _unpublished_chunks(svc) if ready else {}
    checks["indexes"] = {
        "ok": True,
        "collections": len(keys),
        "published": len(published),
        "unpublished": sorted(c.name for c in keys if c.name not in set(published)),
        # chunks of indexed documents not searchable yet (the next publish adds them)
        "unpublished_chunks": sum(behind.values()),
        "behind": sorted(behind),
    }
    checks["model"] = {
        "ok": True,
        "mode": svc.answers.mode,
        "queue_depth": svc.answers.slot.queue_depth,
        "busy": svc.answers.slot.in_use,
    }
    checks["ingest"] = {
        "ok": True,
        "running": svc.ingest is not None,
        # processing on a worker that died, until the reconciler hands them on (-1: unknown)
        "stuck_processing": svc.ingest.stuck_processing() if svc.ingest is not None else 0,
    }
    status = 200 if ready else 503
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), status


@bp.get("/metrics")
def metrics() -> Response:
    return Response(services().metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE)


def _unpublished_chunks(svc: WebServices) -> dict[str, int]:
    try:
        return unpublished_chunks(svc.db, svc.answers.retriever.reader.store)
    except SQLAlchemyError:  # the database check above already answered
        return {}
