"""The text tokenizer interface layouts need: encode text to ids, know EOS. Wraps any HF tokenizer."""

from __future__ import annotations

from typing import Any, Protocol


class TextTokenizer(Protocol):
    eos_id: int
    bos_id: int  # the EOS id where the tokenizer has no BOS (GPT-2 style)

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class HFTextTokenizer:
    """Adapter over a ``transformers`` tokenizer: no automatic BOS/EOS (layouts place them explicitly)."""

    def __init__(self, tokenizer: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the LLM tokenizer has no EOS token; layouts need one to end text spans")
        self.hf = tokenizer
        self.eos_id: int = int(tokenizer.eos_token_id)
        bos = tokenizer.bos_token_id
        self.bos_id: int = self.eos_id if bos is None else int(bos)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)

    def __len__(self) -> int:
        return len(self.hf)
