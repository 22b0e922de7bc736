"""The text prior: a byte-level BPE tokenizer and a small Llama-style causal LM, both plain Hugging Face.

Everything built here saves to and loads from a normal HF directory (``AutoTokenizer`` /
``AutoModelForCausalLM``) so the trained LM is usable without speechbraid, and so the speech LLM can
swap in any other HF causal LM in its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from speechbraid.errors import ConfigError

# Llama's order (unk 0, bos 1, eos 2) plus a pad token; ids are fixed by training them first.
UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
# A byte-level BPE needs all 256 byte symbols before any merge can be learned.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 1


@dataclass(frozen=True)
class LMPreset:
    """Model shape and the training defaults that suit it."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    steps: int
    batch_size: int
    lr: float

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


PRESETS: dict[str, LMPreset] = {
    # For tests: trains a few dozen steps in seconds.
    "tiny": LMPreset(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=172,
                     max_position_embeddings=512, steps=60, batch_size=4, lr=3e-3),
    # The default text prior: about 4M parameters at vocab 4000, a few minutes on 2 CPU cores.
    "small": LMPreset(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
                      max_position_embeddings=2048, steps=700, batch_size=4, lr=2e-3),
}


def get_preset(name: str) -> LMPreset:
    """Look up a preset by name; unknown names raise :class:`ConfigError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown LM preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def check_vocab_size(vocab_size: int) -> None:
    """Raise :class:`ConfigError` for a vocabulary too small to hold the bytes and special tokens."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(f"vocab size {vocab_size} is too small: a byte-level BPE needs at least "
                          f"{MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special tokens + 1 merge)")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int,
                        model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (one document per item).

    No normaliser: case, punctuation and whitespace survive a round trip exactly, because scoring
    (TER, entity error rate) counts them. Encoding prepends ``<s>`` (as Llama does) so prompts look
    like the starts of training sentences; EOS is appended by whoever builds training data.
    """
    check_vocab_size(vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> None:
    """``save_pretrained``, naming the class ``PreTrainedTokenizerFast`` in ``tokenizer_config.json``.

    transformers 5 writes its new class name ``TokenizersBackend``, which transformers 4 cannot
    resolve; the old name loads the same ``tokenizer.json`` in both.
    """
    tokenizer.save_pretrained(out_dir)
    config_path = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def build_text_lm(preset: LMPreset, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM sized by ``preset`` for ``tokenizer``'s vocabulary.

    Embeddings are tied (input and output share one matrix): at this size the embedding table is a
    quarter of all parameters, and tying is what small LMs commonly do.
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_heads,
        max_position_embeddings=preset.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    return LlamaForCausalLM(config)
