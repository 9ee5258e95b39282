"""``/api/v1/chats``: the caller's own conversations (someone else's chat is a 404).

GET    /chats[?q=words]    -> {"chats": [chat]} (q: title or a message contains it)
POST   /chats              {title?, collection_ids?} -> 201 {"chat": chat}
GET    /chats/<id>         -> {"chat": chat, "messages": [message with meta]}
                              (sources the caller can no longer read are redacted)
PATCH  /chats/<id>         {title?, collection_ids?} -> {"chat": chat}
DELETE /chats/<id>         -> 204
PUT    /chats/<id>/messages/<message id>/feedback   {rating: up|down, comment?}
                           -> {"feedback": {rating, comment}} (voting again replaces it)
"""

from __future__ import annotations

from flask import Response

from qa.accounts.users import Principal
from qa.errors import InvalidInput
from qa.messages import N_
from qa.store.db.models import AnswerFeedback
from web.auth import current_principal, login_required
from web.blueprints.api import bp
from web.contracts.api import (
    Chat,
    ChatCreate,
    ChatEnvelope,
    ChatList,
    ChatMessage,
    ChatQuery,
    ChatWithMessages,
    Feedback,
    FeedbackBody,
    FeedbackEnvelope,
)
from web.contracts.operation import Reply, operation
from web.extensions import services

TAG = "chats"


@bp.get("/chats")
@login_required
@operation("The caller's chats, newest first", TAG, {200: ChatList}, errors=(400,), query=ChatQuery)
def list_chats(query: ChatQuery) -> Response:
    p = current_principal()
    chats = services().chats.list(p.user_id, search=query.q)
    return ChatList(chats=[Chat.of(c) for c in chats]).reply()


@bp.post("/chats")
@login_required
@operation(
    "Start a chat",
    TAG,
    {201: Reply(ChatEnvelope, "Created")},
    errors=(400, 404, 413),
    # An empty body is a chat with the defaults (handy for curl); a body must be JSON.
    body=ChatCreate,
    body_required=False,
)
def create_chat(body: ChatCreate) -> Response:
    p = current_principal()
    ids = _readable_ids(p, body.collection_ids)
    chat = services().chats.create(p.user_id, title=body.title, collection_ids=ids or ())
    return ChatEnvelope(chat=Chat.of(chat)).reply(201)


@bp.get("/chats/<chat_id>")
@login_required
@operation("A chat with its messages", TAG, {200: ChatWithMessages}, errors=(404,))
def get_chat(chat_id: str) -> Response:
    p = current_principal()
    chat = services().chats.get(p.user_id, chat_id)
    messages = services().chat_reader.messages(p, chat_id)
    votes = services().feedback.votes(p, chat_id)
    return ChatWithMessages(
        chat=Chat.of(chat),
        messages=[ChatMessage.of(m, _feedback(votes.get(m.id))) for m in messages],
    ).reply()


def _feedback(row: AnswerFeedback | None) -> Feedback | None:
    if row is None:
        return None
    return Feedback(rating="up" if row.rating == "up" else "down", comment=row.comment)


@bp.put("/chats/<chat_id>/messages/<int:message_id>/feedback")
@login_required
@operation(
    "Thumbs up or down, with an optional comment, on an answer of the caller's chat",
    TAG,
    {200: FeedbackEnvelope},
    errors=(400, 404, 413),
    body=FeedbackBody,
    description="Stored with a copy of the question, the answer, its sources and model, for"
    " the admins' feedback view; voting again on the same answer replaces the vote.",
)
def vote(chat_id: str, message_id: int, body: FeedbackBody) -> Response:
    row = services().feedback.vote(
        current_principal(), chat_id, message_id, body.rating, body.comment
    )
    feedback = _feedback(row)
    assert feedback is not None
    return FeedbackEnvelope(feedback=feedback).reply()


@bp.patch("/chats/<chat_id>")
@login_required
@operation(
    "Rename a chat or change its collections",
    TAG,
    {200: ChatEnvelope},
    errors=(400, 404, 413),
    body=ChatCreate,
)
def update_chat(chat_id: str, body: ChatCreate) -> Response:
    p = current_principal()
    title, ids = body.title, _readable_ids(p, body.collection_ids)
    if title is None and ids is None:
        raise InvalidInput(N_("send 'title' and/or 'collection_ids'"))
    chats = services().chats
    chat = chats.get(p.user_id, chat_id)  # NotFound before any change
    if title is not None:
        chat = chats.rename(p.user_id, chat_id, title)
    if ids is not None:
        chat = chats.set_collections(p.user_id, chat_id, ids)
    return ChatEnvelope(chat=Chat.of(chat)).reply()


@bp.delete("/chats/<chat_id>")
@login_required
@operation("Delete a chat", TAG, {204: Reply(description="Deleted")}, errors=(404,))
def delete_chat(chat_id: str) -> tuple[str, int]:
    services().chats.delete(current_principal().user_id, chat_id)
    return "", 204


def _readable_ids(p: Principal, ids: list[int] | None) -> list[int] | None:
    """The ids, if the caller may read every one (NotFound otherwise, like asking).

    The chat service stores any ids (access is checked per question); checking here keeps
    a chat from remembering a collection its owner cannot even see.
    """
    if not ids:
        return ids
    return services().questions.allowed_collections(p, ids)
