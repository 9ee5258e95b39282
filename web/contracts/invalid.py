"""pydantic's ``ValidationError`` as one ``InvalidInput``: the only place that reads one.

Clients see the first problem as a sentence naming the field, the same sentences the
hand-written parsers used to write: "'question' is required", "'k' must be between 1 and
50", "'messages[0].role' must be 'system', 'developer', 'user' or 'assistant'".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from qa.errors import InvalidInput
from web.contracts.base import CUSTOM_ERROR

NOT_AN_OBJECT = "the body is not a JSON object"

#: pydantic error type -> what the field must be (formatted with the error's ctx)
_PHRASES = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "literal_error": "must be {expected}",
    "string_too_long": "is longer than {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_long": "holds at most {max_length} items",
    "too_short": "needs at least {min_length} items",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def invalid_input(exc: ValidationError, model: type[BaseModel], where: str = "") -> InvalidInput:
    """The first error of ``exc`` (raised validating ``model``) as an InvalidInput;
    ``where`` names the part of the request, e.g. "query parameter "."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return InvalidInput(not_json((error.get("ctx") or {}).get("error", "")))
    if not error["loc"]:
        return InvalidInput(NOT_AN_OBJECT)
    return InvalidInput(f"{where}'{field_name(error['loc'])}' {phrase(error, model)}")


def not_json(detail: str) -> str:
    """pydantic's JSON parser (jiter) refuses what no field could hold: a lone surrogate
    escape ("\\ud800") or nesting deeper than its recursion limit (a few hundred levels:
    100,000 "[" are refused at the 201st, without a Python stack)."""
    where = detail.rpartition(" at ")[2] if " at line " in detail else ""
    at = f" (at {where})" if where else ""
    if "recursion limit" in detail:
        return f"the body is not valid JSON: arrays or objects nested too deep{at}"
    if "surrogate" in detail or "hex escape" in detail or "unicode code point" in detail:
        return (
            "the body is not valid JSON: a string holds a lone surrogate or an invalid"
            f" \\u escape, which is not Unicode text{at}"
        )
    return f"the body is not valid JSON: {detail}" if detail else "the body is not valid JSON"


def field_name(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "role")`` -> ``messages[0].role``."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def phrase(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == CUSTOM_ERROR:
        return error["msg"]
    if kind == "extra_forbidden":
        return f"is not a field here; send one of {', '.join(model.model_fields)}"
    if kind in _RANGE_ERRORS and len(error["loc"]) == 1:
        return range_phrase(model, str(error["loc"][0])) or _format(kind, error)
    if kind in _PHRASES:
        return _format(kind, error)
    return f"is invalid: {error['msg']}"


def range_phrase(model: type[BaseModel], name: str) -> str | None:
    """Both ends of a field's range, so a client learns the whole range at once (read from
    the field's JSON schema, where pydantic has gathered them from any nesting)."""
    field = model.model_json_schema()["properties"].get(name, {})
    bounds: dict[str, Any] = next(
        (s for s in (field, *field.get("anyOf", ())) if "maximum" in s), {}
    )
    low, high = bounds.get("minimum", bounds.get("exclusiveMinimum")), bounds.get("maximum")
    if low is None or high is None:
        return None
    if "exclusiveMinimum" in bounds:
        return f"must be greater than {_number(low)} and at most {_number(high)}"
    return f"must be between {_number(low)} and {_number(high)}"


def _format(kind: str, error: ErrorDetails) -> str:
    ctx = {k: _number(v) for k, v in (error.get("ctx") or {}).items()}
    return _PHRASES[kind].format(**ctx)


def _number(value: Any) -> Any:
    """2.0 -> 2 (a limit reads as people write it), other values as they are."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
