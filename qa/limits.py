"""What a client may send, defined once.

The services check these; the web forms (``maxlength``), the OpenAPI description, the
request parsers and the command-line options read them from here, so a limit changed here
changes everywhere.
"""

from __future__ import annotations

#: characters in one question
MAX_QUESTION_CHARS = 8000
#: characters in a system prompt (a user's own or the admin's default)
MAX_SYSTEM_PROMPT_CHARS = 8000
#: tokens one answer may be asked to generate
MAX_ANSWER_TOKENS = 8192
#: passages one question may ask for
MAX_SOURCES = 50
#: statements one summary may be asked for
MAX_SUMMARY_STATEMENTS = 50
