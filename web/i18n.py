"""The web UI's languages: English and Simplified Chinese, through Flask-Babel.

Catalogs are gettext files under ``web/translations/<lang>/LC_MESSAGES``: ``messages.po``
for the templates and Python, ``js.po`` for the browser modules (``_("...")`` in
``web/static/js``). ``make translations`` extracts (``pybabel extract``, babel.cfg) and
compiles them to ``.mo``; the build compiles, the repository keeps only the ``.po``.

The language of a request: the signed-in user's ``language`` preference, else the
browser's Accept-Language (``zh-CN``, ``zh-TW``, ``zh`` all pick Simplified Chinese),
else English. Pages carry ``<html lang>`` and the browser strings of their language as a
JSON block (``js_catalog``), which ``static/js/i18n.js`` reads.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel.support import Translations
from flask import Flask, g, request
from flask_babel import Babel, format_decimal, get_locale, gettext, lazy_gettext, ngettext
from markupsafe import Markup, escape

from qa.accounts.users import LANGUAGES
from qa.errors import DocqaError
from qa.messages import Translatable

TRANSLATIONS = Path(__file__).parent / "translations"
DEFAULT_LANGUAGE = "en"
#: what the language menu shows for each choice, in its own language
LANGUAGE_NAMES = {"en": "English", "zh": "简体中文"}
#: BCP 47 tags for <html lang> and Intl in the browser
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
#: roles as people read them (the stored values stay English identifiers)
ROLE_NAMES = {
    "admin": lazy_gettext("administrator"),
    "editor": lazy_gettext("editor"),
    "reader": lazy_gettext("reader"),
}
#: summary jobs' states and targets (web/static/js/portal/summaries.js has the same)
JOB_STATUS_NAMES = {
    "queued": lazy_gettext("queued"),
    "running": lazy_gettext("running"),
    "done": lazy_gettext("done"),
    "failed": lazy_gettext("failed"),
    "cancelled": lazy_gettext("cancelled"),
}
TARGET_NAMES = {"document": lazy_gettext("document"), "collection": lazy_gettext("collection")}
#: documents' states (admin/collection.js has the same)
DOC_STATUS_NAMES = {
    "queued": lazy_gettext("queued"),
    "processing": lazy_gettext("processing"),
    "indexed": lazy_gettext("indexed"),
    "failed": lazy_gettext("failed"),
}
#: why documents failed, by the failure's code (``Document.error_code``)
FAILURE_NAMES = {
    "password_protected": lazy_gettext("password-protected"),
    "unsupported_type": lazy_gettext("unsupported file type"),
    "no_text": lazy_gettext("no text found (scanned?)"),
    "hostile_file": lazy_gettext("refused as unsafe"),
    "parse_failed": lazy_gettext("the file could not be read"),
    "parse_limit": lazy_gettext("over a size limit"),
    "time_limit": lazy_gettext("took too long"),
    "parser_crashed": lazy_gettext("the parser crashed"),
    "embedding": lazy_gettext("embedding failed"),
    "unknown": lazy_gettext("other"),
}
#: a grant's permission as a noun ("Permission: read") and as what one may do ("you may ...")
#: how a synced folder's last scan went, and what it counted (ingest/folder_sync.py)
SYNC_STATUS_NAMES = {
    "ok": lazy_gettext("ok"),
    "errors": lazy_gettext("some files unreadable"),
    "failed": lazy_gettext("failed"),
    "busy": lazy_gettext("busy"),
}
SYNC_COUNT_NAMES = {
    "added": lazy_gettext("added"),
    "changed": lazy_gettext("changed"),
    "renamed": lazy_gettext("renamed"),
    "deleted": lazy_gettext("deleted"),
    "unchanged": lazy_gettext("unchanged"),
    "settling": lazy_gettext("still being written"),
    "skipped": lazy_gettext("not regular files"),
    "errors": lazy_gettext("unreadable"),
}
PERMISSION_NAMES = {"read": lazy_gettext("read"), "write": lazy_gettext("write")}
PERMISSION_VERBS = {"read": lazy_gettext("read it"), "write": lazy_gettext("change it")}
#: what an error page says first, by status (the server's detail follows it)
STATUS_TITLES = {
    400: lazy_gettext("The request was not understood"),
    401: lazy_gettext("Please sign in"),
    403: lazy_gettext("You may not do this"),
    404: lazy_gettext("Not found"),
    405: lazy_gettext("This action is not possible here"),
    409: lazy_gettext("This conflicts with something that exists"),
    413: lazy_gettext("Too large"),
    415: lazy_gettext("This kind of content is not accepted here"),
    429: lazy_gettext("Too many requests; please wait a moment"),
    500: lazy_gettext("Something went wrong on our side"),
    503: lazy_gettext("Busy or not available right now; please try again shortly"),
}


def status_title(status: int) -> str:
    title = STATUS_TITLES.get(status)
    if title is None:
        title = STATUS_TITLES[500 if status >= 500 else 400]
    return str(title)


def select_language() -> str:
    if g.get("principal") is not None:
        # Imported here: web.auth imports web.errors, which imports this module.
        from web.auth import current_preferences

        chosen = current_preferences().get("language")
        if chosen in LANGUAGES:
            return str(chosen)
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def current_language() -> str:
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LANGUAGE


@cache
def js_catalog(language: str) -> dict[str, Any]:
    """``{msgid: msgstr}`` (plurals: ``{msgid: [forms]}``) of ``js.mo`` for a language;
    empty for English, whose strings are the msgids."""
    if language == DEFAULT_LANGUAGE:
        return {}
    translations = Translations.load(str(TRANSLATIONS), [language], domain="js")
    catalog: dict[str, Any] = {}
    for key, text in getattr(translations, "_catalog", {}).items():
        if isinstance(key, tuple):  # (msgid, plural index)
            forms = catalog.setdefault(key[0], [])
            forms.extend([""] * (key[1] + 1 - len(forms)))
            forms[key[1]] = text
        elif key:  # "" is the catalog's header
            catalog[key] = text
    return catalog


def filesize(size: int | None) -> str:
    """Bytes the reader's way: decimal units as Jinja's filesizeformat, digits localized."""
    if size is None:
        return ""
    if size < 1000:
        return str(ngettext("%(num)s byte", "%(num)s bytes", size))
    value, unit = float(size), "B"
    for unit in ("kB", "MB", "GB", "TB"):  # noqa: B007 - the unit the loop stopped at
        value /= 1000
        if value < 1000:
            break
    return f"{format_decimal(value, '#,##0.0')} {unit}"


def localized(text: str) -> str:
    """A sentence from below the web layer in the request's language: a
    ``qa.messages.Translatable`` is looked up in the catalog by its English template and filled
    with its values (themselves translated when they are messages); plain text, and a
    template the catalog lacks, stay as they are (English)."""
    if not isinstance(text, Translatable) or current_language() == DEFAULT_LANGUAGE:
        return str(text)
    values = {k: localized(v) if isinstance(v, Translatable) else v for k, v in text.params.items()}
    translated = str(gettext(text.template))
    try:
        return translated % values if values else translated
    except (KeyError, TypeError, ValueError):  # a catalog entry whose placeholders differ
        return str(text)


def error_text(exc: DocqaError) -> str:
    """What people are told about ``exc``, in the request's language."""
    return localized(exc.message)


def with_names(translated: str, **names: object) -> Markup:
    """A translated sentence (``_("User %(name)s created.")``) with names filled in,
    marked translate="no", as safe HTML (a flash message). A value that is markup already
    (a translated phrase with its own names marked) goes in as it is."""
    values = {k: v if isinstance(v, Markup) else notranslate(v) for k, v in names.items()}
    return Markup(escape(translated)) % values


def notranslate(value: object) -> Markup:
    """A name, title or other data inside a translated sentence, marked as not to be
    translated (``translate="no"``: browsers' page translators and the i18n test skip it)."""
    return Markup('<span translate="no">%s</span>') % value


def init_i18n(app: Flask) -> None:
    Babel(
        app,
        locale_selector=select_language,
        default_translation_directories=str(TRANSLATIONS),
    )
    app.jinja_env.filters["notranslate"] = notranslate
    app.jinja_env.filters["localized"] = localized
    app.jinja_env.filters["filesize"] = filesize

    @app.context_processor
    def _language_globals() -> dict[str, object]:
        language = current_language()
        return {
            "html_lang": HTML_LANG.get(language, language),
            "js_catalog": js_catalog(language),
            "language_names": LANGUAGE_NAMES,
            "role_names": ROLE_NAMES,
            "job_status_names": JOB_STATUS_NAMES,
            "target_names": TARGET_NAMES,
            "doc_status_names": DOC_STATUS_NAMES,
            "sync_status_names": SYNC_STATUS_NAMES,
            "sync_count_names": SYNC_COUNT_NAMES,
            "permission_names": PERMISSION_NAMES,
            "permission_verbs": PERMISSION_VERBS,
            "failure_names": FAILURE_NAMES,
            # for placeholders that carry markup (a <code> in a translated sentence)
            "Markup": Markup,
        }
