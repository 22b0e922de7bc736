"""Round trips between speechbraid manifests and lhotse / NeMo, and alignment import from CTM / TextGrid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet, load_manifest_lazy
from lhotse.utils import fastcopy

from speechbraid.data.audio import write_wav
from speechbraid.data.interop import (
    AttachReport,
    TextGridDirectory,
    attach_alignments,
    from_cutset,
    read_ctm,
    read_cutset,
    read_nemo,
    read_textgrid,
    to_cutset,
    write_ctm,
    write_cutset,
    write_nemo,
    write_textgrid,
    write_textgrids,
)
from speechbraid.data.manifest import read_manifest, write_manifest
from speechbraid.data.records import EntitySpan, Utterance, WordAlignment
from speechbraid.errors import InputError


def _wav(path: Path, seconds: float, rate: int = 16000) -> str:
    rng = np.random.default_rng(0)
    write_wav(path, 0.1 * rng.standard_normal(int(seconds * rate)).astype(np.float32), rate)
    return str(path)


@pytest.fixture
def records(tmp_path: Path) -> list[Utterance]:
    return [
        Utterance(
            id="utt1",
            text="Take aspirin, twice.",
            audio=_wav(tmp_path / "audio" / "utt1.wav", 1.5),
            sample_rate=16000,
            duration=1.5,
            words=[
                WordAlignment("Take", 0.1, 0.4, score=0.9),
                WordAlignment("aspirin,", 0.45, 0.9),
                WordAlignment("twice.", 1.0, 1.3),
            ],
            entities=[EntitySpan("aspirin", "drug", 5, 12)],
            domain="medical",
            speaker="spk1",
            source="tts:piper",
            units=[3, 1, 4],
            extra={"note": {"k": [1, 2]}},
        ),
        Utterance(id="utt2", text="no alignment yet", audio=_wav(tmp_path / "audio" / "utt2.wav", 0.8, 8000),
                  sample_rate=8000, duration=0.8),
    ]


def _same(a: Utterance, b: Utterance) -> None:
    assert a.id == b.id and a.text == b.text and a.speaker == b.speaker
    assert Path(a.audio).resolve() == Path(b.audio).resolve()
    assert a.sample_rate == b.sample_rate and a.duration == pytest.approx(b.duration, abs=1e-4)
    assert (a.entities, a.domain, a.source, a.units, a.extra) == (b.entities, b.domain, b.source, b.units, b.extra)
    if a.words is None:
        assert b.words is None
    else:
        assert [w.word for w in a.words] == [w.word for w in b.words]
        for x, y in zip(a.words, b.words, strict=True):
            assert (x.start, x.end) == pytest.approx((y.start, y.end), abs=1e-4)
            assert x.score == (None if y.score is None else pytest.approx(y.score))


def test_lhotse_round_trip_in_memory(records: list[Utterance]) -> None:
    cuts = to_cutset(records)
    cut = cuts[0]
    sup = cut.supervisions[0]
    assert sup.text == "Take aspirin, twice." and sup.speaker == "spk1"
    assert sup.custom["domain"] == "medical" and sup.custom["entities"][0]["type"] == "drug"
    assert [(a.symbol, a.start, round(a.duration, 6)) for a in sup.alignment["word"]][1] == ("aspirin,", 0.45, 0.45)
    assert cut.recording.sampling_rate == 16000 and cut.duration == pytest.approx(1.5)
    back = list(from_cutset(cuts))
    for a, b in zip(records, back, strict=True):
        _same(a, b)


def test_lhotse_round_trip_through_jsonl(records: list[Utterance], tmp_path: Path) -> None:
    out = tmp_path / "cuts.jsonl.gz"
    assert write_cutset(records, out) == 2
    lazy = load_manifest_lazy(out)  # lhotse itself can read what we wrote
    assert isinstance(lazy, CutSet) and [c.id for c in lazy] == ["utt1", "utt2"]
    assert lazy[0].load_audio().shape == (1, 24000)
    for a, b in zip(records, read_cutset(out), strict=True):
        _same(a, b)


def test_lhotse_offset_segment_maps_to_cut_start(records: list[Utterance]) -> None:
    seg = Utterance(id="seg", text="twice.", audio=records[0].audio, sample_rate=16000, duration=0.4,
                    words=[WordAlignment("twice.", 0.05, 0.35)], extra={"offset": 1.0})
    cut = to_cutset([seg])[0]
    assert (cut.start, cut.duration) == pytest.approx((1.0, 0.4))
    assert cut.load_audio().shape[1] == 6400
    (back,) = from_cutset([cut])
    _same(seg, back)


def test_lhotse_text_only_raises_or_is_reported(records: list[Utterance]) -> None:
    text_only = Utterance(id="t1", text="just text")
    with pytest.raises(InputError, match="'t1' is text-only"):
        to_cutset([records[0], text_only])
    skipped: list[str] = []
    assert len(to_cutset([text_only, records[1]], skipped=skipped)) == 1
    assert skipped == ["t1"]


def test_lhotse_multi_supervision_cut_gives_one_record_each(records: list[Utterance]) -> None:
    cut = to_cutset([records[0]])[0]
    first = cut.supervisions[0]
    second = type(first)(id="utt1-b", recording_id=first.recording_id, start=0.9, duration=0.6, text="twice.")
    both = list(from_cutset([fastcopy(cut, supervisions=[first, second])]))
    assert [r.id for r in both] == ["utt1", "utt1-b"]
    assert both[1].extra == {"offset": 0.9} and both[1].duration == pytest.approx(0.6)


def test_read_cutset_bad_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "cuts.jsonl"
    bad.write_text('\n{"type": "MonoCut"}\n')
    with pytest.raises(InputError, match=r"cuts\.jsonl:2: not a lhotse cut"):
        list(read_cutset(bad))


def test_nemo_round_trip(records: list[Utterance], tmp_path: Path) -> None:
    out = tmp_path / "nemo" / "train.json"
    assert write_nemo(records, out) == 2
    first = json.loads(out.read_text().splitlines()[0])
    assert list(first)[:3] == ["audio_filepath", "duration", "text"]
    assert first["audio_filepath"] == records[0].audio  # outside the manifest's directory: kept absolute
    back = list(read_nemo(out))
    for a, b in zip(records, back, strict=True):
        _same(a, b)
    manifest = tmp_path / "m.jsonl"
    write_manifest(back, manifest)
    for a, b in zip(records, read_manifest(manifest), strict=True):
        _same(a, b)


def test_nemo_native_file_ids_offsets_and_errors(tmp_path: Path) -> None:
    _wav(tmp_path / "long.wav", 2.0)
    src = tmp_path / "nemo.json"
    src.write_text(
        '{"audio_filepath": "long.wav", "duration": 1.0, "text": "a", "lang": "en"}\n'
        '{"audio_filepath": "long.wav", "duration": 1.0, "offset": 1.0, "text": "b"}\n'
    )
    a, b = read_nemo(src)
    assert (a.id, b.id) == ("long", "long-1000")
    assert a.audio == str(tmp_path / "long.wav") and a.extra == {"lang": "en"} and b.extra == {"offset": 1.0}
    src.write_text(src.read_text() + '{"audio_filepath": "long.wav", "duration": 1.0, "text": "c"}\n')
    with pytest.raises(InputError, match=r"nemo\.json:3: duplicate id 'long' \(first on line 1\)"):
        list(read_nemo(src))
    src.write_text('{"duration": 1.0, "text": "a"}\n')
    with pytest.raises(InputError, match=r"nemo\.json:1: .*audio_filepath"):
        list(read_nemo(src))
    skipped: list[str] = []
    assert write_nemo([Utterance(id="t", text="x")], tmp_path / "o.json", skipped=skipped) == 0 and skipped == ["t"]


def test_ctm_write_read_attach(records: list[Utterance], tmp_path: Path) -> None:
    ctm = tmp_path / "align.ctm"
    skipped: list[str] = []
    assert write_ctm(records, ctm, skipped=skipped) == 3
    assert skipped == ["utt2"]
    assert ctm.read_text().splitlines()[0] == "utt1 1 0.100 0.300 Take 0.9000"
    aligned = read_ctm(ctm)
    assert list(aligned) == ["utt1"]
    stripped = [Utterance(id=r.id, text=r.text, audio=r.audio) for r in records]
    report = AttachReport()
    out = list(attach_alignments(stripped, {**aligned, "ghost": []}, report))
    assert _same_words(out[0], records[0]) and out[0].words[0].score == pytest.approx(0.9)
    assert out[1].words is None
    assert (report.attached, report.without_alignment, report.unmatched) == (1, ["utt2"], ["ghost"])
    assert "1 alignment(s) matched no manifest id" in report.summary()


def _same_words(a: Utterance, b: Utterance) -> bool:
    return all(
        x.word == y.word and abs(x.start - y.start) < 1e-3 and abs(x.end - y.end) < 1e-3
        for x, y in zip(a.words, b.words, strict=True)
    )


def test_ctm_sorts_words_and_skips_comments(tmp_path: Path) -> None:
    ctm = tmp_path / "a.ctm"
    ctm.write_text(";; comment\nu1 A 0.50 0.20 world\n\nu1 A 0.10 0.30 hello 0.5\n")
    words = read_ctm(ctm)["u1"]
    assert [(w.word, w.start, w.score) for w in words] == [("hello", 0.1, 0.5), ("world", 0.5, None)]
    assert words[1].end == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("u1 1 0.1 hello", "expected 5 or 6 fields"),
        ("u1 1 abc 0.2 hello", "start must be a number, got 'abc'"),
        ("u1 1 0.1 -0.2 hello", "start and duration must be >= 0"),
        ("u1 1 0.1 0.2 hello nan", "confidence must be finite"),
    ],
)
def test_ctm_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    ctm = tmp_path / "bad.ctm"
    ctm.write_text(f"u0 1 0.0 0.1 ok\n{line}\n")
    with pytest.raises(InputError, match=rf"bad\.ctm:2: {message}"):
        read_ctm(ctm)


_MFA_GRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.5
        intervals: size = 5
        intervals [1]:
            xmin = 0
            xmax = 0.1
            text = ""
        intervals [2]:
            xmin = 0.1
            xmax = 0.4
            text = "take"
        intervals [3]:
            xmin = 0.4
            xmax = 0.5
            text = "sil"
        intervals [4]:
            xmin = 0.5
            xmax = 0.9
            text = "aspirin"
        intervals [5]:
            xmin = 0.9
            xmax = 1.5
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = "spn"
"""


def test_textgrid_reads_mfa_output_skipping_silence(tmp_path: Path) -> None:
    grid = tmp_path / "utt1.TextGrid"
    grid.write_text(_MFA_GRID)
    words = read_textgrid(grid)
    assert [(w.word, w.start, w.end) for w in words] == [("take", 0.1, 0.4), ("aspirin", 0.5, 0.9)]
    with pytest.raises(InputError, match=r"utt1\.TextGrid: no single tier named 'syllables' \(tiers: words, phones\)"):
        read_textgrid(grid, tier="syllables")


def test_textgrid_write_read_attach_directory(records: list[Utterance], tmp_path: Path) -> None:
    out = tmp_path / "grids"
    skipped: list[str] = []
    assert write_textgrids(records, out, skipped=skipped) == 1 and skipped == ["utt2"]
    assert _same_words(Utterance("utt1", "", words=read_textgrid(out / "utt1.TextGrid")), records[0])
    (out / "spk").mkdir()
    (out / "spk" / "extra.TextGrid").write_text(_MFA_GRID)
    report = AttachReport()
    grids = TextGridDirectory(out)
    stripped = [Utterance(id=r.id, text=r.text) for r in records]
    attached = list(attach_alignments(stripped, grids, report))
    assert _same_words(attached[0], records[0]) and attached[1].words is None
    assert (report.attached, report.without_alignment, report.unmatched) == (1, ["utt2"], ["extra"])


def test_textgrid_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.TextGrid"
    broken.write_text("not a textgrid\n")
    with pytest.raises(InputError, match=r"broken\.TextGrid: unreadable TextGrid"):
        read_textgrid(broken)
    with pytest.raises(InputError, match="no word alignment"):
        write_textgrid(Utterance(id="x", text="y"), tmp_path / "x.TextGrid")
    overlapping = Utterance(id="o", text="a b", words=[WordAlignment("a", 0.0, 0.5), WordAlignment("b", 0.4, 0.8)])
    with pytest.raises(InputError, match="record 'o': cannot build a TextGrid"):
        write_textgrid(overlapping, tmp_path / "o.TextGrid")
