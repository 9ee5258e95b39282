"""The HTTP contract: request and response shapes as pydantic models, and the operation
each API view declares with them.

``web.openapi`` builds the OpenAPI description from these declarations and
``app.url_map``; ``operation`` validates request bodies and query strings through the
same models, so what the description says is what the routes accept.

    base.py       the model bases (strict requests, lax query strings, responses)
    invalid.py    pydantic's ValidationError as one InvalidInput with a clear message
    operation.py  the ``@operation`` decorator and the request readers
    api.py        the shapes of ``/api/v1``
    openai.py     the shapes of the OpenAI-compatible ``/v1``
"""
