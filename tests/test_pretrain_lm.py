"""Text-prior pretraining: tokenizer fidelity, learning, plain-HF output, exact resume, input errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from speechbraid.cli.main import main
from speechbraid.errors import ConfigError, InputError
from speechbraid.models.registry import resolve_model
from speechbraid.models.text_lm import save_tokenizer, train_bpe_tokenizer
from speechbraid.training.pretrain_lm import pack_blocks, pretrain_lm
from speechbraid.training.runlog import read_train_log
from speechbraid.training.runtime import batch_indices

SENTENCES = [
    "The patient was given 50 mg of Aspirin, twice a day.",
    "Dr. Smith's clinic opens at 9:30 a.m. on Mondays!",
    "Is the MRI scheduled for Tuesday, or Wednesday?",
    "She said: \"Take ibuprofen only after meals.\"",
    "Blood pressure: 120/80 mmHg; pulse 72 bpm.",
    "We moved the follow-up (again) to next week.",
    "The quick brown fox jumps over the lazy dog.",
    "No known allergies -- except penicillin.",
]
# Tiny, fast settings shared by the training tests.
FAST = {"preset": "tiny", "vocab_size": 300, "seq_len": 32, "batch_size": 4, "progress": False}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny models gain nothing from more threads, and on shared cores threads spin against each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES * 12) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("lm")
    text = tmp / "corpus.txt"
    text.write_text("\n".join(SENTENCES * 12) + "\n", encoding="utf-8")
    out = tmp / "model"
    metrics = pretrain_lm([text], out, steps=150, lr=1e-2, seed=0, **FAST)
    return out, metrics


def test_tokenizer_round_trips_case_punctuation_and_whitespace(tmp_path: Path) -> None:
    tok = train_bpe_tokenizer(SENTENCES * 3, vocab_size=300)
    save_tokenizer(tok, tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    samples = [*SENTENCES, "  Two  spaces,\ttab and UPPER/lower/MiXeD.  ", "Naïve café — 25°C, ½ dose? Ünïcödé ✓"]
    for t in (tok, reloaded):
        for text in samples:
            ids = t(text)["input_ids"]
            assert ids[0] == t.bos_token_id  # prompts start like training documents
            assert t.decode(ids, skip_special_tokens=True) == text
        assert t("Aspirin")["input_ids"] != t("aspirin")["input_ids"]  # no lowercasing
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.pad_token, reloaded.unk_token) == (
        "<s>", "</s>", "<pad>", "<unk>")
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert len({reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id, reloaded.unk_token_id}) == 4


def test_packing_appends_eos_pads_only_the_tail_and_visits_every_block() -> None:
    tok = train_bpe_tokenizer(SENTENCES * 3, vocab_size=300)
    blocks = pack_blocks(tok, SENTENCES, seq_len=16)
    flat = blocks.flatten().tolist()
    n_real = sum(len(tok(s)["input_ids"]) + 1 for s in SENTENCES)
    assert flat[n_real:] == [tok.pad_token_id] * (len(flat) - n_real) and len(flat) - n_real < 16
    assert flat[:n_real].count(tok.eos_token_id) == len(SENTENCES)
    assert flat[:n_real].count(tok.bos_token_id) == len(SENTENCES)
    # Plain concatenation: documents run across block boundaries, nothing is dropped.
    assert tok.decode(flat[:n_real], skip_special_tokens=True) == "".join(SENTENCES)
    n = len(blocks)
    epoch = [i for step in range(n) for i in batch_indices(step, 1, n, seed=5)]
    assert sorted(epoch) == list(range(n)) and epoch != list(range(n))
    assert n >= 9 and batch_indices(2, 3, n, seed=5) == epoch[6:9]


def test_loss_decreases_and_metrics_are_reported(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    losses = [r["loss"] for r in read_train_log(out)]
    assert len(losses) == 150
    assert sum(losses[-5:]) / 5 < losses[0] - 2.0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert saved["val_perplexity"] == pytest.approx(math.exp(saved["val_loss"]))
    # The held-out lines repeat training lines here, so a model that learned must beat its start.
    assert saved["val_loss"] < losses[0] - 2.0 and saved["val_tokens"] > 0


def test_output_loads_with_plain_transformers_and_generates(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    assert not (out / "checkpoints").exists()
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings and model.config.vocab_size == len(tok)
    prompt = "The quick brown fox"
    enc = tok(prompt, return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert gen.shape[1] > enc["input_ids"].shape[1]
    text = tok.decode(gen[0], skip_special_tokens=True)
    # A memorised sentence continues as trained.
    assert text.startswith("The quick brown fox jumps over")


def _interrupt_at(step_to_stop: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the training loop raise KeyboardInterrupt in the optimizer step of step ``step_to_stop`` (0-based), as
    a kill would: steps before it are done and logged, that one is not."""
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def stopping(*args, **kwargs):
        if calls["n"] == step_to_stop:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", stopping)


def test_resume_after_interruption_matches_uninterrupted_run(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {**FAST, "steps": 12, "checkpoint_every": 4, "seed": 3}
    full = pretrain_lm([corpus], tmp_path / "full", **settings)

    with monkeypatch.context() as patch:
        _interrupt_at(6, patch)
        with pytest.raises(KeyboardInterrupt):
            pretrain_lm([corpus], tmp_path / "cut", **settings)
    cut = tmp_path / "cut"
    assert (cut / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert len(read_train_log(cut)) == 6  # steps 5-6 ran after the last checkpoint and will be redone
    with (cut / "train_log.jsonl").open("a") as log:
        log.write('{"step": 7, "lo')  # a line the crash cut short

    resumed = pretrain_lm([corpus], cut, resume=True, **settings)
    log_full, log_cut = read_train_log(tmp_path / "full"), read_train_log(cut)
    assert [r["step"] for r in log_cut] == list(range(1, 13))
    assert [r["loss"] for r in log_cut] == [r["loss"] for r in log_full]
    assert resumed["val_loss"] == full["val_loss"]
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Resuming a finished run is a no-op that returns its metrics.
    assert pretrain_lm([corpus], cut, resume=True, **settings) == resumed


def test_existing_run_needs_resume_and_same_settings(corpus: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _interrupt_at(2, patch)
        with pytest.raises(KeyboardInterrupt):
            pretrain_lm([corpus], tmp_path / "run", steps=6, **FAST)
    with pytest.raises(ConfigError, match="--resume"):
        pretrain_lm([corpus], tmp_path / "run", steps=6, **FAST)
    with pytest.raises(ConfigError, match="steps"):
        pretrain_lm([corpus], tmp_path / "run", steps=7, resume=True, **FAST)


def test_bad_inputs_raise_errors_naming_the_file(corpus: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputError, match="missing.txt: text file not found"):
        pretrain_lm([corpus, missing], tmp_path / "out", **FAST)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n", encoding="utf-8")
    with pytest.raises(InputError, match="blank.txt: text file is empty"):
        pretrain_lm([corpus, blank], tmp_path / "out", **FAST)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond line\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"bad.txt:3: not valid UTF-8"):
        pretrain_lm([bad], tmp_path / "out", **FAST)
    with pytest.raises(ConfigError, match="unknown LM preset 'huge'"):
        pretrain_lm([corpus], tmp_path / "out", **{**FAST, "preset": "huge"})
    with pytest.raises(ConfigError, match="vocab size"):
        pretrain_lm([corpus], tmp_path / "out", **{**FAST, "vocab_size": 100})
    assert not (tmp_path / "out").exists()


def test_cli_reports_errors_and_trains_the_named_default(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "home"))
    assert main(["pretrain-lm", "--text", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.txt: text file not found" in capsys.readouterr().err
    assert main(["pretrain-lm", "--text", str(corpus), "--out", str(tmp_path / "o"), "--preset", "huge"]) == 2
    assert "unknown LM preset 'huge'" in capsys.readouterr().err

    quick = ["--preset", "tiny", "--steps", "3", "--vocab-size", "300", "--seq-len", "32", "--no-progress"]
    assert main(["pretrain-lm", "--text", str(corpus), *quick]) == 0  # no --out: the default-lm slot
    assert "validation perplexity" in capsys.readouterr().out
    default_dir = tmp_path / "home" / "models" / "default-lm"
    assert resolve_model("default-lm") == default_dir
    assert json.loads((default_dir / "metrics.json").read_text())["steps"] == 3

    elsewhere = tmp_path / "elsewhere"
    assert main(["pretrain-lm", "--text", str(corpus), "--out", str(elsewhere), "--name", "my-lm", *quick]) == 0
    assert resolve_model("my-lm") == elsewhere.resolve()
