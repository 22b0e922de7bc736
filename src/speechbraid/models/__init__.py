"""Model loading, the decoding state (KV cache), the model-name registry, and imports of pretrained models."""
