"""Bases of every contract model, and small declarations they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from flask import Response, jsonify
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
)
from pydantic_core import PydanticCustomError, PydanticUndefined

#: the type of a message's error (``invalid.py`` shows it as it is)
CUSTOM_ERROR = "docqa_invalid"


class Body(BaseModel):
    """A JSON request body. Strict: JSON has types, so "5" is not 5 and true is not 1.
    Unknown fields are ignored, as clients of a newer API version may send them."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Query(BaseModel):
    """A query string: every value arrives as text, so numbers are parsed from it."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Shape(BaseModel):
    """A response shape: views answer with ``shape.reply()``; the OpenAPI description and
    the contract test (which validates real responses against it) read the same class."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of_fields(cls, obj: object) -> Self:
        """The shape read off a service's dataclass whose fields carry the same names."""
        return cls.model_validate(obj, from_attributes=True)

    def reply(self, status: int = 200) -> Response:
        resp = jsonify(self.model_dump(mode="json"))
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
