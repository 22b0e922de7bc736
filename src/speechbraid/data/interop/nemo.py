"""NeMo-style JSONL manifests: ``{"audio_filepath": ..., "duration": ..., "text": ..., ["offset": ...]}``.

NeMo has no utterance id. On import the id comes from an ``id`` key when present, else from the audio
file stem (plus the offset in milliseconds, when set, so segments of one file stay distinct). On
export the id and every other speechbraid field (words, entities, domain, ...) are written as extra
keys, which NeMo ignores, so manifest -> NeMo -> manifest loses nothing. ``offset`` and unknown keys
travel in :attr:`Utterance.extra`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from speechbraid.data.audio import audio_info
from speechbraid.data.interop._files import relative_audio, skip_or_raise
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError, ManifestError
from speechbraid.files import atomic_open, iter_text_lines


def read_nemo(path: str | Path) -> Iterator[Utterance]:
    """Yield records from a NeMo manifest lazily; relative audio paths resolve against its directory.

    Bad lines and duplicate ids raise :class:`ManifestError` with file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("NeMo manifest not found", path)
    seen: dict[str, int] = {}
    for line_no, raw in iter_text_lines(path, error_type=ManifestError):
        if not raw.strip():
            continue
        try:
            record = Utterance.from_dict(_to_record_dict(json.loads(raw)), base_dir=path.parent)
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ManifestError(f"invalid NeMo record: {exc}", path, line_no) from None
        if record.id in seen:
            raise ManifestError(
                f"duplicate id '{record.id}' (first on line {seen[record.id]}); add an 'id' key to tell "
                "the entries apart",
                path,
                line_no,
            )
        seen[record.id] = line_no
        yield record


def _to_record_dict(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    audio = obj.get("audio_filepath")
    if not isinstance(audio, str) or not audio:
        raise ValueError("missing required field 'audio_filepath'")
    out = {k: v for k, v in obj.items() if k != "audio_filepath"}
    out["audio"] = audio
    if "id" not in out:
        stem = Path(audio).stem
        offset = obj.get("offset")
        out["id"] = stem if not offset else f"{stem}-{round(float(offset) * 1000):d}"
    return out


def write_nemo(
    records: Iterable[Utterance],
    path: str | Path,
    skipped: list[str] | None = None,
    relative_paths: bool = True,
) -> int:
    """Write records as a NeMo manifest (atomically); return the number written.

    NeMo needs audio: text-only records raise :class:`InputError`, or are appended to ``skipped`` when
    it is a list. A missing duration is read from the audio header.
    """
    path = Path(path)
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            if record.audio is None:
                skip_or_raise(record.id, "is text-only; NeMo manifests need audio", skipped)
                continue
            obj = record.to_dict()
            audio = obj.pop("audio")
            if obj.get("duration") is None:
                obj["duration"] = round(audio_info(audio)[1], 4)
            nemo: dict[str, Any] = {
                "audio_filepath": relative_audio(audio, path.parent) if relative_paths else audio,
                "duration": obj.pop("duration"),
                "text": obj.pop("text"),
            }
            nemo.update(obj)
            handle.write(json.dumps(nemo, ensure_ascii=False) + "\n")
            count += 1
    return count
