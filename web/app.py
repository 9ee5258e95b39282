"""The Flask app factory: one blueprint per feature, services in ``app.extensions``.

    create_app(settings)                       # services built from settings
    create_app(settings, services=svc)          # tests and ``docqa serve`` pass their own

``docqa serve`` (cli/main.py) is the composition root that also hands in the ingest
queue, because ``web`` may not import ``ingest``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from flask import Flask, Response, g, request

from qa import limits
from qa.settings import Settings, get_settings
from web import auth, bodies, security
from web.errors import register_error_handlers
from web.extensions import EXTENSION, WebServices, build_web_services, load_secret_key
from web.i18n import init_i18n
from web.requests import IdConverter, TextIdConverter

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, services: WebServices | None = None) -> Flask:
    settings = settings or (services.settings if services else get_settings())
    svc = services or build_web_services(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        SESSION_COOKIE_NAME="docqa_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # Before any blueprint: every path variable then takes only ids the database can hold.
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["default"] = app.url_map.converters["string"] = TextIdConverter
    app.extensions[EXTENSION] = svc
    init_i18n(app)

    @app.before_request
    def _guards() -> None:
        g.started = time.perf_counter()
        if request.routing_exception is not None:
            return  # 404/405 answer as such, before credentials, body or CSRF are looked at
        auth.load_principal()  # headers only: the cookie or the Authorization header
        bodies.check_body()  # 401/403/413/415 from the headers, before the body is read
        security.check_rate()
        security.check_csrf()

    app.teardown_request(bodies.release)

    @app.after_request
    def _after(resp: Response) -> Response:
        resp = security.set_headers(resp)
        endpoint = request.endpoint or "unmatched"
        svc.metrics.requests.labels(request.method, endpoint, str(resp.status_code)).inc()
        started = g.get("started")
        if started is not None:
            svc.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        return resp

    @app.context_processor
    def _template_globals() -> dict[str, object]:
        return {
            "csrf_token": security.csrf_token,
            "principal": g.get("principal"),
            "answer_mode": svc.answers.mode,
            "limits": limits,
            "directory_sign_in": svc.sign_in.has_directory,
            "oidc_provider_name": svc.sign_in.oidc_provider_name,
        }

    register_error_handlers(app)
    _register_blueprints(app)
    app.wsgi_app = bodies.CloseUnread(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _register_blueprints(app: Flask) -> None:
    from web.blueprints import admin, api, auth_views, openai, ops, portal

    for module in (ops, auth_views, portal, admin, api, openai):
        app.register_blueprint(module.bp)
