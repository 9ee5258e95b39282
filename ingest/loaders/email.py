"""EML (RFC 822 / MIME) -> one page: the main headers, then the body text.

The plain-text body is preferred; an HTML-only message goes through the HTML loader's text
extraction. Attachments are not parsed (each would need its own sandboxed run); their names
are listed in ``metadata["attachments"]``.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.document import Heading, Page, ParsedDocument
from ingest.loaders.common import collapse_spaces, normalize_text
from ingest.loaders.html import html_to_page
from ingest.textdecode import bom_encoding, decode_bytes, utf16_without_bom
from qa.errors import NoExtractableText, ParseError
from qa.messages import N_

if TYPE_CHECKING:
    from ingest.sandbox import ParseLimits

HEADERS = ("From", "To", "Cc", "Date", "Subject")


def load(path: Path, limits: ParseLimits) -> ParsedDocument:
    data = path.read_bytes()
    if bom_encoding(data) or utf16_without_bom(data):
        # A UTF-16/32 saved message: the MIME parser only understands ASCII-compatible bytes.
        message = email.message_from_string(decode_bytes(data).text, policy=policy.default)
    else:
        message = email.message_from_bytes(data, policy=policy.default)
    if not isinstance(message, EmailMessage):  # policy.default always builds EmailMessage
        raise ParseError(N_("not an email message"))

    lines: list[str] = []
    headings: list[Heading] = []
    subject = ""
    offset = 0
    for name in HEADERS:
        value = collapse_spaces(normalize_text(_header(message, name)))
        if not value:
            continue
        line = f"{name}: {value}"
        if name == "Subject":
            subject = value
            headings.append(Heading(offset + len(name) + 2, 1, value))
        lines.append(line)
        offset += len(line) + 1

    body = _body_text(message)
    if not body.strip() and not subject:
        raise NoExtractableText(N_("no extractable text"))
    text = "\n".join(lines) + "\n\n" + body.strip("\n")
    metadata: dict[str, str] = {}
    attachments = _attachment_names(message)
    if attachments:
        metadata["attachments"] = ", ".join(attachments)
    return ParsedDocument(
        kind="email",
        pages=(Page(1, text.rstrip(), tuple(headings)),),
        title=subject or None,
        metadata=metadata,
    )


def _header(message: EmailMessage, name: str) -> str:
    try:
        values = message.get_all(name) or []
        return ", ".join(str(v) for v in values)
    except (ValueError, TypeError, IndexError, LookupError):
        # policy.default parses structured headers; a mangled one is dropped, not fatal.
        return ""


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_subtype() == "html":
        return html_to_page(text)[0].text
    return normalize_text(text)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    # Decode ourselves: the declared charset is often wrong or unknown to Python.
    return decode_bytes(payload, part.get_content_charset()).text


def _attachment_names(message: EmailMessage) -> list[str]:
    names = []
    for attachment in message.iter_attachments():
        name = attachment.get_filename()
        names.append(collapse_spaces(name) if name else attachment.get_content_type())
    return names
