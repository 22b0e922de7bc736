"""Pretrain the default text prior: tokenizer + small Llama-style LM on plain text, resumable.

Data: every non-blank line of the text files is one document (a sentence or a paragraph), encoded as
``<s> text </s>``. Packing is **plain concatenation**: all training documents are joined into one
token stream and cut into fixed ``seq_len`` blocks, so a block may span several documents and
attention is NOT reset at document boundaries. For LM pretraining that is harmless (``</s><s>`` tells
the model a new document starts) and wastes no compute on padding; attention reset matters later,
when unrelated speech examples are packed together. Only the stream's final, short block is padded
(pads carry no loss), so no text is dropped.

Determinism: which blocks make up step ``s`` is a pure function of (seed, s) — one seeded permutation
of the blocks per epoch — so resuming from a checkpoint needs no data-loader state, and a resumed run
reproduces an uninterrupted one exactly.

Output directory layout::

    out_dir/config.json, model.safetensors, generation_config.json   final model (plain HF)
    out_dir/tokenizer.json, tokenizer_config.json                    tokenizer (plain HF)
    out_dir/metrics.json        final metrics, incl. validation perplexity
    out_dir/train_log.jsonl     one line per optimiser step
    out_dir/pretrain_run.json   the run's settings (resume refuses different ones)
    out_dir/checkpoints/        resume state while training; removed when the run completes
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text, read_text_lines
from speechbraid.models.text_lm import (
    build_text_lm,
    check_vocab_size,
    get_preset,
    save_tokenizer,
    train_bpe_tokenizer,
)
from speechbraid.training.loop import TrainingLoop, make_scheduler, progress_bar
from speechbraid.training.runlog import read_train_log
from speechbraid.training.runtime import batch_indices

RUN_FILE = "pretrain_run.json"
METRICS_FILE = "metrics.json"

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.1
ADAM_BETAS = (0.9, 0.95)
MAX_GRAD_NORM = 1.0


# ----------------------------------------------------------------------------------------------- text


def split_train_val(lines: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out a seeded random ``val_fraction`` of the documents (at least one) for validation."""
    if len(lines) < 2:
        raise InputError(f"need at least 2 non-blank lines of text (one is held out), got {len(lines)}")
    n_val = min(len(lines) - 1, max(1, round(len(lines) * val_fraction)))
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx = set(order[:n_val])
    train = [line for i, line in enumerate(lines) if i not in val_idx]
    val = [line for i, line in enumerate(lines) if i in val_idx]
    return train, val


def pack_blocks(tokenizer: PreTrainedTokenizerFast, lines: list[str], seq_len: int) -> torch.Tensor:
    """Encode documents as ``<s> text </s>``, concatenate, cut into ``[n_blocks, seq_len]``.

    The last block is right-padded with the pad id (masked out of attention and loss downstream).
    """
    ids = tokenizer(lines, add_special_tokens=True)["input_ids"]
    stream = [tok for doc in ids for tok in (*doc, tokenizer.eos_token_id)]
    n_blocks = math.ceil(len(stream) / seq_len)
    stream.extend([tokenizer.pad_token_id] * (n_blocks * seq_len - len(stream)))
    return torch.tensor(stream, dtype=torch.long).view(n_blocks, seq_len)


def _inputs(blocks: torch.Tensor, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    mask = blocks != pad_id
    labels = blocks.masked_fill(~mask, -100)
    return {"input_ids": blocks.to(device), "attention_mask": mask.long().to(device), "labels": labels.to(device)}


# ------------------------------------------------------------------------------------------ files


def _text_fingerprint(lines: list[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------- training


def _optimizer(model: LlamaForCausalLM, lr: float) -> torch.optim.AdamW:
    # Decay matrices only; norms' gains are not decayed (standard for transformer LMs).
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS)


@torch.no_grad()
def evaluate_perplexity(model: LlamaForCausalLM, blocks: torch.Tensor, pad_id: int, batch_size: int,
                        device: torch.device, dtype: torch.dtype | None = None) -> tuple[float, int]:
    """Token-weighted mean next-token loss over ``blocks`` and the number of predicted tokens."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = _inputs(blocks[start:start + batch_size], pad_id, device)
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1),
            ignore_index=-100, reduction="sum",
        )
        total += float(loss)
        count += int((targets != -100).sum())
    model.train(was_training)
    return total / max(count, 1), count


def pretrain_lm(
    text_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    preset: str = "small",
    vocab_size: int = 4000,
    steps: int | None = None,
    seq_len: int = 256,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    val_fraction: float = 0.02,
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Train a tokenizer and a causal LM on ``text_files``; write a plain HF model dir to ``out_dir``.

    ``steps``, ``batch_size`` and ``lr`` default to the preset's values; ``checkpoint_every`` to a
    tenth of the run. With ``resume=True`` an interrupted run in ``out_dir`` continues from its last
    checkpoint (same settings and text required); a finished run returns its saved metrics. Returns
    the metrics also saved in ``metrics.json`` (validation loss and perplexity among them).
    """
    spec = get_preset(preset)
    check_vocab_size(vocab_size)
    steps = spec.steps if steps is None else steps
    batch_size = spec.batch_size if batch_size is None else batch_size
    lr = spec.lr if lr is None else lr
    checkpoint_every = max(1, steps // 10) if checkpoint_every is None else checkpoint_every
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len),
                        ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr}")
    if seq_len > spec.max_position_embeddings:
        raise ConfigError(f"seq_len {seq_len} exceeds preset {preset!r}'s context of {spec.max_position_embeddings}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")

    lines = read_text_lines(text_files)
    train_lines, val_lines = split_train_val(lines, val_fraction, seed)
    out = Path(out_dir)
    run = {
        "preset": preset, **spec.as_dict(), "vocab_size": vocab_size, "steps": steps, "seq_len": seq_len,
        "batch_size": batch_size, "lr": lr, "seed": seed, "val_fraction": val_fraction,
        "text_files": [str(p) for p in text_files], "text_sha256": _text_fingerprint(lines),
    }
    run_path = out / RUN_FILE
    if run_path.is_file():
        if not resume:
            raise ConfigError(f"{out} already holds a pretrain-lm run; pass --resume to continue it "
                              "or choose another output directory")
        saved = json.loads(run_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in run.keys() | saved.keys() if k != "text_files" and run.get(k) != saved.get(k))
        if changed:
            raise ConfigError(f"cannot resume {out}: settings differ from the saved run in {', '.join(changed)}")
        if (out / METRICS_FILE).is_file():
            return json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)

    # The tokenizer is trained once per run and reused on resume (so ids never shift).
    if run_path.is_file() and (out / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(out)
    else:
        tokenizer = train_bpe_tokenizer(train_lines, vocab_size, model_max_length=spec.max_position_embeddings)
        save_tokenizer(tokenizer, out)
    atomic_write_text(run_path, json.dumps(run, indent=2) + "\n")

    train_blocks = pack_blocks(tokenizer, train_lines, seq_len)
    val_blocks = pack_blocks(tokenizer, val_lines, seq_len)
    pad_id = tokenizer.pad_token_id

    device = pick_device()
    dtype = autocast_dtype(device)
    torch.manual_seed(seed)
    model = build_text_lm(spec, tokenizer)
    optimizer = _optimizer(model, lr)
    loop = TrainingLoop(model, optimizer, make_scheduler(optimizer, steps, WARMUP_FRACTION), out,
                        clip=MAX_GRAD_NORM, checkpoint_every=checkpoint_every)
    start, _ = loop.restore(resume)
    model.to(device)
    model.train()

    tokens_per_step = batch_size * seq_len

    def step_fn(step: int) -> dict[str, Any]:
        batch = _inputs(train_blocks[batch_indices(step, batch_size, len(train_blocks), seed)], pad_id, device)
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        return {"loss": loss.item(), "tokens": (step + 1) * tokens_per_step}

    with progress_bar(steps, start, "pretrain-lm", progress) as bar:
        loop.run(step_fn, start, steps, bar)
    train_seconds = loop.train_seconds

    val_loss, val_tokens = evaluate_perplexity(model, val_blocks, pad_id, batch_size, device, dtype)
    log_records = read_train_log(out)
    tail = [r["loss"] for r in log_records[-10:]]
    metrics = {
        "preset": preset, "steps": steps, "seq_len": seq_len, "batch_size": batch_size, "lr": lr, "seed": seed,
        "vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()),
        "train_documents": len(train_lines), "val_documents": len(val_lines),
        "train_tokens_in_corpus": int((train_blocks != pad_id).sum()), "tokens_seen": steps * tokens_per_step,
        "final_train_loss": sum(tail) / len(tail), "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
        "val_tokens": val_tokens, "train_seconds": round(train_seconds, 1), "device": device.type,
        "autocast": str(dtype).removeprefix("torch.") if dtype is not None else "none",
    }
    model.to("cpu").save_pretrained(out)
    save_tokenizer(tokenizer, out)
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(loop.checkpoints)
    return metrics
