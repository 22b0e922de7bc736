"""The Python API: a trained speech LLM as one object, the way transformers / NeMo users expect.

    from speechbraid import SpeechLLM

    model = SpeechLLM.from_pretrained("runs/main/rows/asr-only/seed0/model")  # a directory or a registered name
    model.transcribe("call.wav")                    # -> "the patient takes metformin twice a day"
    model.transcribe([samples_16k, "other.wav"])    # arrays (16 kHz mono unless sample_rate says otherwise) or files
    model.save_pretrained("my-model")               # self-contained: every weight, config, tokenizer, a model card

It sits on top of the package (it uses the same loading, transcription and pattern decoding as the CLI), so the
CLI and Python give the same transcripts. ``model.module`` is the underlying ``torch.nn.Module``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.files import atomic_open, atomic_write_text

AudioInput = str | Path | np.ndarray
CARD_FILE = "README.md"
METRICS_FILE = "test_eval.json"  # written beside a model by `speechbraid evaluate` / the studies


class SpeechLLM:
    """A trained speechbraid speech LLM (speech encoder + adapter + causal LM) ready for inference."""

    def __init__(self, transcriber: Any) -> None:
        self._transcriber = transcriber  # an inference.transcribe.SpeechLLMTranscriber

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, *, device: str | None = None, decoder: str = "llm",
                        lm: str | Path | None = None, ctc_weight: float | None = None) -> SpeechLLM:
        """Load a model saved by ``speechbraid train`` / :meth:`save_pretrained` (a directory, or a name from the
        local model store). ``decoder="ctc"`` transcribes with the CTC bridge alone (no LLM step);
        ``decoder="ctc-lm"`` beam-searches it with a word n-gram LM (``lm``, an ARPA file; default the model
        directory's ``lm.arpa.gz``); ``decoder="llm-ctc"`` decodes with the LLM scored jointly with the bridge
        (weight ``ctc_weight``; with ``lm`` also the n-gram)."""
        from speechbraid.inference.transcribe import DEFAULT_CTC_WEIGHT, SPEECH_LLM_FILE, SpeechLLMTranscriber
        from speechbraid.models.registry import resolve_model

        directory = resolve_model(name_or_dir)
        if not (directory / SPEECH_LLM_FILE).is_file():
            raise CheckpointError(f"not a speechbraid speech LLM directory (no {SPEECH_LLM_FILE})", directory)
        weight = DEFAULT_CTC_WEIGHT if ctc_weight is None else ctc_weight
        return cls(SpeechLLMTranscriber(directory, device, decoder, lm, weight))

    @property
    def module(self) -> Any:
        return self._transcriber.model

    @property
    def tokenizer(self) -> Any:
        return self._transcriber.hf_tokenizer

    @property
    def config(self) -> Any:
        return self._transcriber.config

    @property
    def directory(self) -> Path:
        return Path(self._transcriber.model_dir)

    def transcribe(self, audio: AudioInput | Sequence[AudioInput], *, sample_rate: int = 16000, batch_size: int = 8,
                   beam_size: int = 1, context: str | None = None) -> str | list[str]:
        """Transcripts of audio files or sample arrays (mono, ``sample_rate`` Hz); one input gives one string.

        Inputs longer than the model takes at once are cut at pauses and stitched back, as on the CLI.
        """
        from speechbraid.data.audio import write_wav
        from speechbraid.inference.transcribe import audio_item

        single = isinstance(audio, str | Path | np.ndarray)
        inputs = [audio] if single else list(audio)  # type: ignore[list-item]
        with tempfile.TemporaryDirectory(prefix="speechbraid-api-") as scratch:
            items = []
            for k, item in enumerate(inputs):
                if isinstance(item, np.ndarray):
                    if item.ndim != 1:
                        raise ConfigError(f"input {k}: expected mono samples (a 1-D array), got shape {item.shape}")
                    path = Path(scratch) / f"input-{k:05d}.wav"
                    write_wav(path, item.astype(np.float32, copy=False), sample_rate)
                    items.append(audio_item(path, utt_id=f"input-{k}"))
                else:
                    items.append(audio_item(item, utt_id=f"input-{k}"))
            run = self._transcriber.transcribe(items, batch_size=batch_size, beam_size=beam_size, context=context,
                                               progress=False)
        return run.texts[0] if single else run.texts

    def generate(self, question: str, *, pattern: str = "esi", max_steps: int = 512) -> tuple[str, list[int]]:
        """Answer a text question with text and speech units under a generation pattern (interleaved, esi,
        parallel); returns (text, units). A unit vocoder turns the units into audio (``speechbraid generate``)."""
        from speechbraid.inference.patterns import generate_response
        from speechbraid.inference.settings import PatternDecodeConfig

        prompt, chosen, tokenizer = self._question(question, pattern)
        response = generate_response(self.module, [prompt], chosen, None, PatternDecodeConfig(max_steps=max_steps))[0]
        return tokenizer.decode(list(response.text)).strip(), list(response.units)

    def _question(self, question: str, pattern: str) -> tuple[Any, Any, Any]:
        """(prompt, pattern, text tokenizer) of a text question."""
        from speechbraid.data.questions import SQAQuestion
        from speechbraid.evaluation.generation import generation_prompt
        from speechbraid.evaluation.modality_gap import as_text_tokenizer
        from speechbraid.patterns import get_pattern

        if not question.strip():
            raise ConfigError("the question text is empty")
        try:
            chosen = get_pattern(pattern)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        tokenizer = as_text_tokenizer(self.tokenizer)
        return generation_prompt(SQAQuestion("prompt", "text", question.strip(), ("",)), "text", tokenizer), chosen, \
            tokenizer

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write a self-contained model directory (weights of every part, config, tokenizer) and a model card
        that states the config and, when the source directory has them, the measured test metrics."""
        from speechbraid.inference.transcribe import MODEL_LM_FILE
        from speechbraid.models.build import save_speech_llm

        out = save_speech_llm(self.module, self.tokenizer, self.config, out_dir)
        for name in (METRICS_FILE, MODEL_LM_FILE):  # what the source directory holds beside the weights
            source = self.directory / name
            if source.is_file() and source.resolve() != (out / name).resolve():
                with atomic_open(out / name, "wb") as handle:
                    handle.write(source.read_bytes())
        atomic_write_text(out / CARD_FILE, model_card(out))
        return out


def model_card(directory: Path) -> str:
    """A short README for a saved model: what it is, its config, and its measured metrics (if any)."""
    from speechbraid.models.build import CONFIG_FILE

    meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    model = meta["model"]
    lines = ["# speechbraid speech LLM", "",
             f"- text prior (LLM): `{model['llm']}`; speech encoder: `{model['encoder']}`"
             + (f" (`{model['whisper']}`)" if model["encoder"] == "whisper" else ""),
             f"- vocabulary: {meta['vocab']['text_size']} text tokens, {meta['vocab']['num_units']} speech units",
             "", "```python", "from speechbraid import SpeechLLM",
             f"model = SpeechLLM.from_pretrained({str(directory)!r})",
             'print(model.transcribe("audio.wav"))', "```", "", "## Config", "", "```json",
             json.dumps(model, indent=2), "```"]
    metrics = directory / METRICS_FILE
    if metrics.is_file():
        scores = json.loads(metrics.read_text(encoding="utf-8"))
        overall = scores.get("overall", scores)
        shown = {k: overall[k] for k in ("wer", "ter", "eer", "utterances") if k in overall}
        lines += ["", "## Measured", "", f"On `{scores.get('manifest', 'the test set')}`: "
                  + ", ".join(f"{k} {v}" for k, v in shown.items())]
    return "\n".join(lines) + "\n"
