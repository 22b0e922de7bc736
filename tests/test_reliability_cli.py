"""Bad input against the CLI, as a user meets it: a subprocess per case, its exit code, one line naming the file
(and line), and nothing lost or written half. ``scripts/bad_input_table.py`` runs the same cases for the README.

Each case is issue #10's list of what went wrong: a run directory overwritten, non-UTF-8 bytes, audio longer than
the encoder's 30 s, damaged LLM weights, text espeak cannot time, broken markup, an empty manifest, a clip too
short to hold a word, a WAV cut off after its header.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from speechbraid.data.audio import write_wav

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


@dataclass
class Case:
    kind: str  # what is wrong, for the README table
    argv: list[str]  # after "speechbraid"
    rc: int  # expected exit status
    message: str  # regex the first stderr line (or the report) must match
    check: Callable[[subprocess.CompletedProcess], None] | None = None  # more about what a user sees
    unchanged: list[Path] = field(default_factory=list)  # files the command must leave byte for byte
    absent: list[Path] = field(default_factory=list)  # files it must not write


def make_tiny_llm(out: Path) -> Path:
    """The tests' tiny Llama + BPE (as tests/conftest.py's ``tiny_llm_dir``), for callers outside pytest."""
    from speechbraid.models.text_lm import build_text_lm, get_preset, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(["Take aspirin twice daily.", "The bank opened a savings account."] * 40,
                                    vocab_size=300)
    build_text_lm(get_preset("tiny"), tokenizer).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_whisper_speech_llm(out: Path, llm_dir: Path) -> Path:
    """An untrained speech LLM around a tiny random Whisper encoder with Whisper's real 30 s input limit."""
    from transformers import WhisperConfig, WhisperModel

    from speechbraid.models.build import ModelConfig, build_speech_llm, save_speech_llm

    whisper_dir = out / "tiny-whisper"
    config = WhisperConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=1, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(whisper_dir)
    model_config = ModelConfig(llm=str(llm_dir), encoder="whisper", whisper=str(whisper_dir))
    model, tokenizer = build_speech_llm(model_config)
    return save_speech_llm(model, tokenizer, model_config, out / "model")


def _tones(seconds: float, bursts: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Noise bursts (stand-ins for speech) at the given (start, end) times, silence elsewhere."""
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(seconds * RATE), dtype=np.float32)
    for a, b in bursts:
        samples[int(a * RATE):int(b * RATE)] = 0.3 * rng.standard_normal(int(b * RATE) - int(a * RATE))
    return samples


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_cases(root: Path, llm_dir: Path) -> list[Case]:
    """Write every bad input under ``root`` and return the cases that use them."""
    root.mkdir(parents=True, exist_ok=True)
    model = make_whisper_speech_llm(root / "slm", llm_dir)
    good_wav = root / "clip.wav"
    write_wav(good_wav, _tones(1.0, [(0.1, 0.9)]), RATE)
    record = {"id": "a", "text": "take aspirin", "audio": "clip.wav", "sample_rate": RATE, "duration": 1.0}
    cases: list[Case] = []

    # 1. a run directory with an earlier run in it: nothing may be replaced
    run = root / "run"
    (run / "checkpoints" / "step-00000500").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step-00000500\n")
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "train_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(1, 31)))
    train_manifest = root / "train.jsonl"
    train_manifest.write_text(json.dumps(record) + "\n")
    train_args = ["train", "--out", str(run), f"model.llm={llm_dir}", f"data.train=[{{manifest: {train_manifest}}}]",
                  "device=cpu", "tensorboard=false"]
    cases.append(Case("train into an existing run directory without --resume", train_args, 2,
                      r"run: run directory is not empty; pass --resume .* or --overwrite",
                      unchanged=[run / "config.yaml", run / "train_log.jsonl", run / "checkpoints" / "latest"]))
    not_a_run = root / "papers"
    not_a_run.mkdir()
    (not_a_run / "thesis.tex").write_text("precious\n")
    cases.append(Case("train --overwrite on a directory that is not a run", [*train_args[:2], str(not_a_run),
                                                                            *train_args[3:], "--overwrite"], 2,
                      r"papers: --overwrite would delete a directory that is not a training run",
                      unchanged=[not_a_run / "thesis.tex"]))

    # 3. one non-UTF-8 byte
    bad_utf8 = root / "latin1.jsonl"
    bad_utf8.write_bytes(json.dumps(record).encode() + b"\n"
                         + json.dumps({**record, "id": "b", "text": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9")
                         + b"\n" + json.dumps({**record, "id": "c", "text": ""}).encode() + b"\n")
    cases.append(Case("manifest with a non-UTF-8 byte: validate", ["validate", str(bad_utf8)], 1,
                      r"latin1.jsonl:2: \[-\] invalid_record: not valid UTF-8: byte 0xe9",
                      check=lambda p: _assert_in(p.stdout, "latin1.jsonl:3: [c] empty_text")))
    clean = root / "clean.jsonl"
    cases.append(Case("manifest with a non-UTF-8 byte: validate --policy skip",
                      ["validate", str(bad_utf8), "--policy", "skip", "--output", str(clean)], 0,
                      r"latin1.jsonl:2: \[-\] invalid_record: not valid UTF-8",
                      check=lambda p: _assert_lines(clean, 1)))
    cases.append(Case("manifest with a non-UTF-8 byte: transcribe",
                      ["transcribe", "--model", str(model), str(bad_utf8)], 2,
                      r"latin1.jsonl:2: not valid UTF-8: byte 0xe9 at byte \d+ of the line"))
    hyps = root / "hyps.tsv"
    hyps.write_bytes(b"a\ttake aspirin\nb\tcaf\xe9\n")
    ref = root / "ref.jsonl"
    ref.write_text(json.dumps(record) + "\n" + json.dumps({**record, "id": "b", "text": "cafe"}) + "\n")
    cases.append(Case("hypothesis file with a non-UTF-8 byte: score", ["score", "--ref", str(ref), "--hyp", str(hyps)],
                      2, r"hyps.tsv:2: not valid UTF-8: byte 0xe9"))

    # 4. audio longer than the encoder's 30 s, beside a clip too short to hold a word (one process for both: each
    # transcription subprocess spends seconds loading the model)
    long_wav = root / "lecture.wav"
    write_wav(long_wav, _tones(70.0, [(t, t + 2.5) for t in np.arange(0.5, 69.0, 3.0)]), RATE)
    tiny_clip = root / "blip.wav"
    write_wav(tiny_clip, _tones(0.05, [(0.0, 0.05)]), RATE)
    cases.append(Case("70 s WAV (speech LLM, Whisper encoder: 30 s limit) and a 0.05 s clip: transcribe",
                      ["transcribe", "--model", str(model), str(long_wav), str(tiny_clip), "--max-new-tokens", "3",
                       "--json"], 0,
                      r"warning: .*blip.wav: 0.050 s of audio is shorter than the 0.1 s minimum; not transcribed",
                      check=lambda p: (_assert_json_ids(p.stdout, ["lecture", "blip"]),
                                       _assert_in(p.stderr, "70.05 s of audio"),
                                       _assert_in(p.stdout.splitlines()[1], '"text": ""'))))

    # 5. damaged LLM weights
    truncated_model = root / "truncated-model"
    _copy_tree(model, truncated_model)
    weights = truncated_model / "llm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases.append(Case("truncated LLM weight file", ["transcribe", "--model", str(truncated_model), str(good_wav)], 2,
                      r"truncated-model/llm/model.safetensors: cannot load the causal LM: .*incomplete metadata"))
    pickled_model = root / "pickled-model"
    _copy_tree(model, pickled_model)
    (pickled_model / "llm" / "model.safetensors").unlink()
    import pickle

    (pickled_model / "llm" / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": [1, 2]}))
    cases.append(Case("a pickle where LLM weights belong", ["transcribe", "--model", str(pickled_model), str(good_wav)],
                      2, r"pickled-model/llm/pytorch_model.bin: cannot load the causal LM: the weights are a pickle",
                      check=lambda p: _assert_not_in(p.stderr, "weights_only")))

    # 6. silent wrong results
    for lang, text in (("ru", "Принимайте аспирин два раза в день с водой."), ("zh", "请每天服用两次阿司匹林。")):
        source = root / f"{lang}.txt"
        source.write_text(text + "\n", encoding="utf-8")
        cases.append(Case(f"synth: {'Russian' if lang == 'ru' else 'Chinese'} text (English voices)",
                          ["synth", str(source), "--out", str(root / f"synth-{lang}"), "--jobs", "1", "--quiet"], 2,
                          rf"{lang}.txt:1: record '{lang}-000001': cannot synthesise: word times cover only .* "
                          "unsupported language/script", absent=[root / f"synth-{lang}" / "manifest.jsonl"]))
    squeezed_wav = root / "squeezed.wav"
    write_wav(squeezed_wav, _tones(5.0, [(0.1, 4.8)]), RATE)
    squeezed = root / "squeezed.jsonl"
    squeezed.write_text(json.dumps({"id": "s", "text": "take aspirin", "audio": "squeezed.wav", "sample_rate": RATE,
                                    "duration": 5.0, "words": [{"word": "take", "start": 0.1, "end": 0.6},
                                                               {"word": "aspirin", "start": 0.6, "end": 1.4}]}) + "\n")
    cases.append(Case("validate: word times squeezed into the first 30% of the audio", ["validate", str(squeezed)], 1,
                      r"squeezed.jsonl:1: \[s\] speech_after_last_word: the last word ends at 1.400 s, 28% into"))
    for markup in ("Take [aspirin(drug) twice daily.", "Take [x]() twice daily."):
        source = root / f"markup{len(cases)}.txt"
        source.write_text(markup + "\n")
        cases.append(Case(f"synth: broken entity markup {markup.split()[1]}",
                          ["synth", str(source), "--out", str(root / f"synth-m{len(cases)}"), "--quiet"], 2,
                          rf"markup{len(cases)}.txt:1: broken entity markup at column 6",
                          absent=[root / f"synth-m{len(cases)}" / "manifest.jsonl"]))
    empty = root / "empty.jsonl"
    empty.write_bytes(b"")
    cases.append(Case("0-byte manifest: validate", ["validate", str(empty)], 2,
                      r"empty.jsonl: the manifest is empty \(no records to validate\)"))
    cut_wav = root / "cut.wav"
    write_wav(cut_wav, _tones(2.0, [(0.1, 1.9)]), RATE)
    cut_wav.write_bytes(cut_wav.read_bytes()[:20000])
    cases.append(Case("WAV whose data is shorter than its header says: transcribe",
                      ["transcribe", "--model", str(model), str(cut_wav)], 2,
                      r"cut.wav: truncated audio: the WAV header declares 2.000 s but the file holds only 0.62\d s"))
    return cases


def _copy_tree(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


def _assert_in(text: str, part: str) -> None:
    assert part in text, text[-2000:]


def _assert_not_in(text: str, part: str) -> None:
    assert part not in text, text[-2000:]


def _assert_lines(path: Path, count: int) -> None:
    assert len(path.read_text().splitlines()) == count


def _assert_json_ids(stdout: str, ids: list[str]) -> None:
    assert [json.loads(line)["id"] for line in stdout.splitlines()] == ids, stdout


def run_case(case: Case, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "SPEECHBRAID_HOME": str(home),
           "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "speechbraid", *case.argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def message_line(case: Case, proc: subprocess.CompletedProcess) -> str:
    """The line of the output the user reads for this case (the first one matching the expectation, else the
    last stderr line)."""
    lines = proc.stderr.splitlines() + proc.stdout.splitlines()
    found = [line for line in lines if re.search(case.message, line)]
    return found[0] if found else (proc.stderr.strip().splitlines() or [""])[-1]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, tiny_llm_dir):
    root = tmp_path_factory.mktemp("bad_input")
    cases = build_cases(root, tiny_llm_dir)
    hashes = [{path: _sha(path) for path in case.unchanged} for case in cases]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda case: run_case(case, root / "home"), cases))
    return list(zip(cases, procs, hashes, strict=True))


CASE_COUNT = 16


def test_case_list_is_complete(outcomes):
    assert len(outcomes) == CASE_COUNT


@pytest.mark.parametrize("index", range(CASE_COUNT))
def test_bad_input(outcomes, index):
    case, proc, hashes = outcomes[index]
    where = f"{case.kind}: rc {proc.returncode}\nstderr: {proc.stderr[-3000:]}\nstdout: {proc.stdout[-1500:]}"
    assert proc.returncode == case.rc, where
    assert "Traceback" not in proc.stderr, where
    assert re.search(case.message, message_line(case, proc)), where
    if proc.returncode == 2:  # a user error is one line naming the file
        errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1, where
    for path, digest in hashes.items():
        assert path.exists() and _sha(path) == digest, f"{case.kind}: {path} changed"
    for path in case.absent:
        assert not path.exists(), f"{case.kind}: {path} was written"
    if case.check is not None:
        case.check(proc)
