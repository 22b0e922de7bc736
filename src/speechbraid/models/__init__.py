"""Model loading, the model-name registry, and imports of pretrained models into HF format."""
