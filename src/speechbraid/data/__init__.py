"""Data layer: utterance records, manifests, validation, segmentation, features and format interop."""

from speechbraid.data.manifest import ManifestLine, iter_manifest, read_manifest, write_manifest
from speechbraid.data.records import EntitySpan, Utterance, WordAlignment, voice_family

__all__ = [
    "EntitySpan",
    "ManifestLine",
    "Utterance",
    "WordAlignment",
    "iter_manifest",
    "read_manifest",
    "voice_family",
    "write_manifest",
]
