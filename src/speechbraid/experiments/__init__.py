"""Experiments: recipes that compose data, training, decoding and evaluation into one command."""
