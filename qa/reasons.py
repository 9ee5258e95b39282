"""Failure reasons made fit to show: no server path in them.

A reason recorded for a document or a job is shown to whoever uploaded or asked for it,
and the text of a foreign exception (``FileNotFoundError: [Errno 2] ...
'/srv/docqa/var/blobs/ab/cd/...'``) tells them where the service keeps its data. Reasons
are cleaned where they are recorded, so every reader (portal, API, CLI) gets the same.
"""

from __future__ import annotations

import re

from qa.messages import Translatable

#: what a path is replaced with
HIDDEN = "[server path]"

# An absolute POSIX path (not the tail of a URL, a ratio or a word with a slash in it:
# the slash must start the string or follow a space, quote, bracket, '=' or ':' + space),
# a home-relative one, or a Windows drive path. It runs until whitespace or a quote,
# and ends before a trailing '.', ',', ':' or ';'.
_PATH = re.compile(
    r"""(?:(?<=^)|(?<=[\s'"(\[<=,]))(?:~?/|[A-Za-z]:[\\/])(?:[^\s'"<>)\]]*[^\s'"<>)\].,:;])?""",
)


def public_reason(reason: str) -> str:
    """``reason`` with every file system path replaced by ``[server path]``; a translatable
    reason stays translatable (the paths go from its values: templates hold none)."""
    if isinstance(reason, Translatable):
        values = {
            k: public_reason(v) if isinstance(v, str) else v for k, v in reason.params.items()
        }
        return Translatable(reason.template, values)
    return _PATH.sub(HIDDEN, reason)
