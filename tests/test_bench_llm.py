"""`speechbraid bench llm` on a tiny random Llama: rows, trainable sets and JSON output, never timings."""

import json

import torch

from speechbraid.benchmarks.llm import MODES, format_llm, lora_settings, resolve_llm, trainable
from speechbraid.cli.main import main
from speechbraid.models.build import load_causal_lm, with_lora

SHAPE = ["--rows", "2", "--length", "16", "--decode-batch", "2", "--prompt-tokens", "4", "--new-tokens", "3"]


def lora_param_count(llm: torch.nn.Module, targets: list[str], r: int) -> int:
    """r x (in + out) per adapted Linear: the A and B matrices LoRA adds."""
    return sum(r * (m.in_features + m.out_features) for name, m in llm.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)


def test_bench_llm_cli_json(tiny_llm_dir, capsys):
    assert main(["bench", "llm", "--model", str(tiny_llm_dir), "--steps", "1", "--device", "cpu", "--json",
                 *SHAPE]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["mode"]: row for row in result["training"]}
    assert list(rows) == list(MODES)
    for row in rows.values():
        assert row["positions_per_s"] > 0 and row["ms_per_step"] > 0
    assert rows["frozen"]["time_vs_frozen"] == 1.0
    assert rows["frozen"]["trainable_params"] == 0 and not rows["frozen"]["optimizer_step"]

    llm, _ = load_causal_lm(tiny_llm_dir)
    total = sum(p.numel() for p in llm.parameters())
    assert rows["full"]["trainable_params"] == total and not rows["full"]["lora_only"]
    for mode, settings in lora_settings().items():
        assert rows[mode]["lora_only"]  # every trainable weight of the row is a LoRA matrix
        assert rows[mode]["trainable_params"] == lora_param_count(llm, settings.target_modules, settings.r) > 0
    assert rows["lora-mlp"]["trainable_params"] > rows["lora"]["trainable_params"]

    decode = result["decode"]
    assert (decode["batch"], decode["prompt_tokens"], decode["new_tokens"]) == (2, 4, 3)
    assert decode["tokens_per_s"] > 0 and decode["rtf_25hz_units"] > 0
    text = format_llm(result)
    assert "| lora-mlp |" in text and "KV cache" in text


def test_lora_rows_go_through_the_project_lora(tiny_llm_dir):
    llm, _ = load_causal_lm(tiny_llm_dir)
    settings = lora_settings()["lora"]
    assert (settings.r, settings.alpha) == (16, 32)
    names = trainable(with_lora(llm, settings))
    assert names and all("lora_" in name for name in names)
    assert {name.split(".")[-4] for name in names} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_default_model_falls_back_to_a_stand_in(tmp_path):
    # the test session's SPEECHBRAID_HOME holds no smollm2-135m
    path, note = resolve_llm(None, tmp_path)
    assert note.startswith("FALLBACK") and "smollm2-135m" in note
    assert (path / "config.json").is_file()


def test_bench_llm_rejects_bad_shapes(capsys):
    assert main(["bench", "llm", "--rows", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err
