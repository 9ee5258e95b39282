"""Bases of every contract model, and small declarations they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self

from flask import Response, jsonify
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError, PydanticUndefined

from qa.limits import MAX_INT_ID
from qa.storable_text import unstorable_reason

#: the type of a message's error (``invalid.py`` shows it as it is)
CUSTOM_ERROR = "docqa_invalid"

#: a collection, user or group id: what the database's integer column holds
Id = Annotated[int, Field(ge=1, le=MAX_INT_ID)]


class _Request(BaseModel):
    """What every request model refuses: text no database can store (a NUL, or a lone
    surrogate from a ``\\ud800`` escape), anywhere in any field, before a service sees it."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        reason = _unstorable(value)
        if reason is not None:
            raise PydanticCustomError(CUSTOM_ERROR, reason)
        return value


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        return unstorable_reason(value)
    if isinstance(value, list | tuple):
        return next((r for r in map(_unstorable, value) if r is not None), None)
    if isinstance(value, dict):
        parts = (*value.keys(), *value.values())
        return next((r for r in map(_unstorable, parts) if r is not None), None)
    return None  # numbers, booleans, and nested models (checked by their own validator)


class Body(_Request):
    """A JSON request body. Strict: JSON has types, so "5" is not 5 and true is not 1.
    Unknown fields are ignored, as clients of a newer API version may send them."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Query(_Request):
    """A query string: every value arrives as text, so numbers are parsed from it."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Shape(BaseModel):
    """A response shape: views answer with ``shape.reply()``; the OpenAPI description and
    the contract test (which validates real responses against it) read the same class."""

    model_config = ConfigDict(frozen=True)

    #: answer only the fields that were given (read off the service's object, or keys of a
    #: dict it built), not the defaults of the others: a summary job read in a listing has
    #: no ``result`` field at all, and a document's summary no ``documents`` or ``skipped``
    only_given: ClassVar[bool] = False

    @classmethod
    def of_fields(cls, obj: object) -> Self:
        """The shape read off a service's dataclass whose fields carry the same names."""
        return cls.model_validate(obj, from_attributes=True)

    def reply(self, status: int = 200) -> Response:
        resp = jsonify(self.model_dump(mode="json", exclude_unset=self.only_given))
        resp.status_code = status
        return resp


def one_message(message: str) -> Callable[[Any, ValidatorFunctionWrapHandler], Any]:
    """A wrap validator that reports any failure inside as one ``message``: a union's
    per-member errors say less to a client than what the field should be."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(CUSTOM_ERROR, message) from None

    return validate


def enum_of(values: tuple[str, ...], *, default: Any = PydanticUndefined, **extra: Any) -> Any:
    """A field whose values are a tuple defined elsewhere: documented as an enum; the
    service that owns the tuple checks it."""
    enum: list[JsonValue] = list(values)
    if default is None:
        enum.append(None)
    return Field(default, json_schema_extra={"enum": enum}, **extra)
