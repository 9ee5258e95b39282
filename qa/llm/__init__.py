"""The LLM backend: a streaming Qwen3 -> ONNX builder and an onnxruntime generator.

* ``build.build_model`` turns a local Hugging Face Qwen3 folder into ``model.onnx`` (+ one
  external-data file) with INT8 block-quantized weights, reading one tensor at a time.
* ``generate.OnnxQwenGenerator`` streams tokens from the built model with sampling,
  cancellation and KV-cache reuse (``kv_cache.KVSessionCache``).
"""
