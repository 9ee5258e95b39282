"""LLM-specific errors; all derive from ``qa.errors`` so callers catch ``DocqaError``.

Proposed for ``qa/errors.py``::

    DocqaError
    ├── ConfigError
    │   └── ModelNotBuilt        the model directory holds no (complete) built model
    └── ModelBuildError          the source folder cannot be turned into a model
"""

from __future__ import annotations

from qa.errors import ConfigError, DocqaError


class ModelNotBuilt(ConfigError):
    code = "model_not_built"


class ModelBuildError(DocqaError):
    code = "model_build"


class GenerationError(DocqaError):
    """onnxruntime failed while running the model (translated at the session boundary)."""

    code = "generation"
