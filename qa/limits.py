"""What a client may send, defined once.

The services check these; the web forms (``maxlength``), the OpenAPI description, the
request parsers and the command-line options read them from here, so a limit changed here
changes everywhere.
"""

from __future__ import annotations

#: bytes of a request body from a caller who is not signed in (a sign-in form is < 1 KiB)
MAX_ANONYMOUS_BODY_BYTES = 16 * 1024
#: bytes of any other request body but an upload (JSON, forms); uploads: max_upload_mb
MAX_REQUEST_BODY_BYTES = 2 * 1024 * 1024
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
#: sampling temperature (0 is greedy)
MAX_TEMPERATURE = 2.0
#: characters in a chat, document or job id (document ids are 64 hex digits)
MAX_ID_CHARS = 64
#: a numeric id (collections, users): the database's 32-bit integer
MAX_INT_ID = 2**31 - 1
#: characters in a collection name
MAX_COLLECTION_NAME_CHARS = 100
#: collection ids one request may name
MAX_COLLECTION_IDS = 1000
#: summary jobs one listing returns
MAX_JOBS_LISTED = 200
#: messages one OpenAI-style chat completion request may hold
MAX_CHAT_MESSAGES = 500
#: characters in an OpenAI-style model name ("docqa/<collection slug>", or the name)
MAX_MODEL_NAME_CHARS = 300
#: questions one evaluation run (``docqa eval answers --limit``) may ask of each set
MAX_EVAL_QUESTIONS = 100_000
#: bytes of one evaluation file read whole (SQuAD 2.0's training set is 40 MiB)
MAX_EVAL_FILE_BYTES = 256 * 2**20
