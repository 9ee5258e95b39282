"""Sentences docqa says to people from below the web layer, kept translatable.

``qa`` and ``ingest`` have no request and no language: they raise errors and record failure
reasons in English. A sentence made with :func:`N_` is still that English ``str`` (logs, the
CLI and API clients see it unchanged), but it remembers its template and values, so the web
layer can say it again in the reader's language from the same gettext catalog as the pages
(``web.i18n.localized``). pybabel extracts ``N_("...")`` by default (babel.cfg lists qa/ and
ingest/).

Values are kept as given; the template must name each with ``%(name)s``. A value that is
itself a Translatable is translated too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Translatable(str):
    """An English sentence that knows how to be said in another language."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, params: Mapping[str, Any] | None = None) -> Translatable:
        values = dict(params or {})
        text = super().__new__(cls, template % values if values else template)
        text.template = template
        text.params = values
        return text

    def to_wire(self) -> dict[str, Any]:
        """The template and its values as JSON (values that are not plain become text)."""
        return {"template": self.template, "params": {k: _plain(v) for k, v in self.params.items()}}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Translatable | None:
        """The message ``to_wire`` described, or None when ``wire`` is not one."""
        template, params = wire.get("template"), wire.get("params")
        if not isinstance(template, str) or not isinstance(params, dict):
            return None
        values = {k: _value_from_wire(v) for k, v in params.items()}
        try:
            return cls(template, values)
        except (KeyError, TypeError, ValueError):  # a peer's template that does not fit
            return None


def restored(text: str, wire: Any) -> str:
    """``text`` as the Translatable ``wire`` describes when that says the same words
    (a template that no longer fits, or none, leaves the plain text)."""
    said = Translatable.from_wire(wire) if isinstance(wire, Mapping) else None
    return said if said is not None and said == text else text


def N_(template: str, /, **params: Any) -> Translatable:
    """Mark ``template`` for translation and fill it with ``params`` (English for now)."""
    return Translatable(template, params)


def _plain(value: Any) -> Any:
    if isinstance(value, Translatable):
        return value.to_wire()
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def _value_from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        return Translatable.from_wire(value) or ""
    return value
