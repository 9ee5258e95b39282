"""``/api/v1/me``: who the caller is, what they may read, and their saved preferences.

GET /me                   -> {"user", "role", "preferences", "defaults", "collections",
                              "answer_mode"}
PUT /me/preferences       {system_prompt?, temperature?, top_p?, max_tokens?, theme?}
                          -> {"preferences"}; a null value resets that key to the default
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from qa.answering.answer_service import AskOptions
from qa.llm.generate import Generator
from qa.llm.sampling import SamplingDefaults
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.contracts.api import Collection, Me, Preferences, PreferencesEnvelope
from web.contracts.operation import operation
from web.extensions import services
from web.requests import client_ip


@bp.get("/me")
@login_required
@operation("The signed-in user and their preferences", "me", {200: Me})
def me() -> Response:
    p = current_principal()
    svc = services()
    return jsonify(
        {
            "user": {
                "id": p.user_id,
                "username": p.username,
                "display_name": p.display_name,
                "role": p.role,
            },
            "role": p.role,
            "preferences": svc.accounts.preferences(p.user_id),
            "defaults": _defaults(
                svc.config.default_system_prompt() or svc.answers.default_system_prompt,
                svc.answers.generator,
            ),
            "collections": [
                Collection.of_fields(c).model_dump() for c in svc.library.collections(p)
            ],
            "answer_mode": svc.answers.mode,
        }
    )


@bp.put("/me/preferences")
@login_required
@operation(
    "Change preferences (merged; null resets a key)",
    "me",
    {200: PreferencesEnvelope},
    errors=(400, 413),
    body=Preferences,
)
def set_preferences(body: Preferences) -> Response:
    p = current_principal()
    svc = services()
    data = body.model_dump(exclude_unset=True)  # the keys sent: null resets one
    merged = svc.accounts.set_preferences(p.user_id, data)
    svc.audit.record(
        "settings_change",
        actor=p,
        target=p.username,
        # Which keys changed, not the values: a system prompt can be long and personal.
        details={"preferences": sorted(data)},
        ip=client_ip(),
    )
    return jsonify({"preferences": merged})


def _defaults(system_prompt: str, generator: Generator | None) -> dict[str, Any]:
    """What an unset preference means, so the settings panel can show it: sampling as the
    model folder's generation_config.json says (extractive mode samples nothing)."""
    options = AskOptions()
    sampling = generator.sampling_defaults if generator is not None else SamplingDefaults()
    return {
        "system_prompt": system_prompt,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": options.max_tokens,
        "theme": "dark",
    }
