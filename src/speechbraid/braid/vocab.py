"""The vocabulary layout: where text tokens, special tokens and speech units live in the LLM vocabulary.

This is the only place that knows the offsets. The LLM's own tokenizer occupies ``[0, text_size)``;
speechbraid's special tokens follow, then ``num_units`` speech units.
"""

from __future__ import annotations

from dataclasses import dataclass

# Names are stable strings (they appear in layouts, checkpoints and `speechbraid layout` output).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|asr|>",        # task token: transcribe the preceding speech
    "<|il|>",         # start of a segment-level interleaved sequence (<s> in the JSTIP paper)
    "<|N|>",          # modality switch inside segment-level interleaving (<N>)
    "<|/il|>",        # end of an interleaved sequence (</s>)
    "<|tpad|>",       # text padding in interleaved/parallel generation once the text has ended
    "<|spad|>",       # speech padding (parallel pattern's delayed stream before speech starts)
    "<|S|>",          # ESI switch: the rest of the response is speech only
    "<|eos_speech|>", # end of speech
    "<|eot|>",        # end of the response text
    "<|resp|>",       # start of a generated response (text and/or speech)
)


@dataclass(frozen=True)
class VocabLayout:
    text_size: int
    num_units: int = 0
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS

    @property
    def special_offset(self) -> int:
        return self.text_size

    @property
    def unit_offset(self) -> int:
        return self.text_size + len(self.special_tokens)

    @property
    def size(self) -> int:
        return self.unit_offset + self.num_units

    def special_id(self, name: str) -> int:
        try:
            return self.special_offset + self.special_tokens.index(name)
        except ValueError:
            raise KeyError(f"unknown special token {name!r}; known: {', '.join(self.special_tokens)}") from None

    def unit_id(self, unit: int) -> int:
        if not 0 <= unit < self.num_units:
            raise ValueError(f"speech unit {unit} outside [0, {self.num_units})")
        return self.unit_offset + unit

    def kind_of(self, token_id: int) -> str:
        """'text', 'special' or 'units' for a vocabulary id."""
        if token_id < self.special_offset:
            return "text"
        if token_id < self.unit_offset:
            return "special"
        if token_id < self.size:
            return "units"
        raise ValueError(f"token id {token_id} outside the vocabulary of size {self.size}")
