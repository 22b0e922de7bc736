"""Discrete speech units: a k-means speech tokenizer, and units back to audio (unit-to-mel + Griffin-Lim)."""
