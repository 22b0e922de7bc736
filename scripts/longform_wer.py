"""What long-form stitching costs: WER of one >= 60 s recording against the same audio cut by hand into sentences.

    python3 scripts/longform_wer.py [--model whisper-base] [--out DIR]

Synthesises the sentences below with espeak-ng (one voice, seeded), joins them with pauses into one recording,
and transcribes both ways with the same model: the recording cut by hand into sentences (each with half of
the pause on either side; the reference) and the
whole recording through long-form transcription (cut at pauses into pieces the model takes, stitched in
order). Prints WER (the project's scoring normalisation) and real-time factor for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from speechbraid.data.audio import load_audio, write_wav  # noqa: E402
from speechbraid.data.records import Utterance  # noqa: E402

SENTENCES = [
    "The pharmacist asked whether the patient had taken any other medicine this week.",
    "Please transfer two hundred dollars from my savings account to the checking account.",
    "The clinic opens at eight in the morning and closes early on Fridays.",
    "Take one tablet with a full glass of water after breakfast and dinner.",
    "My credit card was declined at the grocery store yesterday afternoon.",
    "The doctor said the swelling should go down within three or four days.",
    "We would like to open a joint account for our daughter before the summer.",
    "Store the bottle in a cool dry place away from direct sunlight.",
    "The bank charges a small fee for every international wire transfer.",
    "If the headache comes back, call the nurse line at any time of day.",
    "Her mortgage payment is due on the first of every month.",
    "The children walked to the library to return their books on time.",
    "Keep a list of every medication you take and bring it to each visit.",
    "The interest rate on the new loan is lower than we expected.",
    "After the meeting, the team went out for lunch near the river.",
    "Do not drive or operate machinery until you know how this drug affects you.",
]
PAUSE_SECONDS = 0.6


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    from speechbraid.data.normalize import tokens_for_wer

    ref = " ".join(" ".join(tokens_for_wer(r)) for r in refs)
    hyp = " ".join(" ".join(tokens_for_wer(h)) for h in hyps)
    return jiwer.wer(ref, hyp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="whisper-base", help="model name or directory (default whisper-base)")
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--out", type=Path, help="keep the audio and transcripts here (default: a temporary dir)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from speechbraid.inference.transcribe import collect_inputs, load_transcriber
    from speechbraid.models.registry import list_models
    from speechbraid.synth import run_synthesis

    if args.model == "whisper-base" and "whisper-base" not in list_models():
        from speechbraid.models.whisper_import import import_whisper

        import_whisper()  # offline, from the PyPI wheels
    with tempfile.TemporaryDirectory(prefix="longform-") as tmp:
        out = args.out or Path(tmp)
        records = [Utterance(f"s{i:02d}", text) for i, text in enumerate(SENTENCES)]
        report = run_synthesis(records, out / "sentences", "espeak", voices=[args.voice], jobs=1, progress=False)
        pause = np.zeros(int(PAUSE_SECONDS * 16000), dtype=np.float32)
        half = len(pause) // 2
        pieces, cuts = [], []
        for record in report.records:
            samples, _ = load_audio(record.audio)
            pieces += [pause, samples]
        recording = np.concatenate([*pieces, pause])
        write_wav(out / "recording.wav", recording, 16000)
        # "cut by hand": each sentence with half of the pause on either side, as one would cut the recording
        start = 0
        for k in range(len(report.records)):
            end = start + 2 * half + len(pieces[2 * k + 1])
            write_wav(out / "cut" / f"s{k:02d}.wav", recording[start:end], 16000)
            cuts.append(out / "cut" / f"s{k:02d}.wav")
            start = end

        transcriber = load_transcriber(args.model, args.device)
        sentence_items = collect_inputs(cuts)
        per_sentence = transcriber.transcribe(sentence_items, progress=False)
        long_items = collect_inputs([out / "recording.wav"])
        long_form = transcriber.transcribe(long_items, progress=False)

        result = {
            "model": str(transcriber.model_dir), "voice": args.voice, "sentences": len(SENTENCES),
            "recording_seconds": round(long_form.audio_seconds, 2),
            "pieces": [[round(a, 2), round(b, 2)] for a, b, _ in long_form.segments[0]],
            "wer_per_sentence": round(100 * wer(SENTENCES, per_sentence.texts), 2),
            "wer_long_form": round(100 * wer(SENTENCES, long_form.texts), 2),
            "rtf_per_sentence": round(per_sentence.rtf, 3), "rtf_long_form": round(long_form.rtf, 3),
            "hyp_long_form": long_form.texts[0], "hyp_per_sentence": per_sentence.texts,
        }
        if args.out:
            (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
