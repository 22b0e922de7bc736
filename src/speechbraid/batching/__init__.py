"""Batching and packing: braids -> padded/packed tensors the model consumes (no model code here)."""

from speechbraid.batching.collate import IGNORE_INDEX, BraidBatch, FlatBraid, collate, flatten_braid
from speechbraid.batching.packing import pack_rows

__all__ = ["IGNORE_INDEX", "BraidBatch", "FlatBraid", "collate", "flatten_braid", "pack_rows"]
