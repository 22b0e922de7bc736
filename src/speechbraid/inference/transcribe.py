"""Transcribe audio with a saved model of either kind - a speechbraid speech LLM or a Whisper checkpoint.

:func:`load_transcriber` looks at a model directory (or registered name) and returns one
:class:`Transcriber`; :func:`collect_inputs` turns audio files and JSONL manifests into
:class:`AudioItem` s, checking every audio header BEFORE any model work so a bad file fails in
seconds, not after an hour of decoding. :func:`evaluate_model` transcribes a reference manifest and
scores it with :func:`speechbraid.metrics.asr.evaluate`.

Any length of audio: an input longer than the model accepts in one piece (:meth:`Transcriber.max_segment_seconds`:
Whisper 30 s; a speech LLM at most :data:`DEFAULT_SEGMENT_SECONDS` and what its LLM's context leaves room for)
is cut at pauses into pieces (:mod:`speechbraid.inference.longform`), the pieces are transcribed like any
input and their transcripts joined in order; the pieces' times come back in ``TranscriptionRun.segments``.
Neither model kind gives word times, so none are reported. An input shorter than :data:`MIN_AUDIO_SECONDS` is
not transcribed (models invent a sentence for it): its transcript is empty and a warning names it.

Speed is reported as the real-time factor ``rtf = wall seconds / audio seconds`` (below 1 is
faster than real time). For a speech LLM the wall time covers feature extraction and decoding, not
model loading; for Whisper it also covers the model load, because the judge loads its model on
every call (see :func:`speechbraid.models.judge.transcribe_with_whisper`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechbraid.data.audio import audio_info
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import CheckpointError, ConfigError, InputError
from speechbraid.files import atomic_write_text, read_append_log
from speechbraid.inference.longform import stitch
from speechbraid.inference.settings import DecodeConfig
from speechbraid.models.registry import resolve_model

if TYPE_CHECKING:  # torch and transformers load only when a model does
    import torch
    from transformers import PreTrainedTokenizerBase

    from speechbraid.models.build import ModelConfig
    from speechbraid.models.speech_llm import SpeechLLM

DEFAULT_MAX_NEW_TOKENS = 128
# Without --max-new-tokens a transcript may have at most this many tokens per second of audio (plus a few):
# speech runs at ~3 words (~4-5 tokens) a second, so a model caught in a repetition loop stops early instead of
# spending 128 LLM steps on every utterance.
TOKENS_PER_SECOND = 8
MIN_AUDIO_SECONDS = 0.1  # shorter than the shortest word: nothing to transcribe
DEFAULT_SEGMENT_SECONDS = 30.0  # longest piece a speech LLM is given (they are trained on utterances of seconds)
MANIFEST_SUFFIXES = (".jsonl", ".json")  # everything else is read as audio (anything soundfile reads)
SPEECH_LLM_FILE = "speechbraid.json"  # == speechbraid.models.build.CONFIG_FILE, kept here to avoid importing torch


@dataclass(frozen=True)
class AudioItem:
    """One audio input: ``id`` names it in outputs, ``where`` tells the user where it came from."""

    id: str
    path: str
    duration: float  # seconds, from the audio header
    where: str  # "file" or "manifest:line"


@dataclass(frozen=True)
class TranscriptionRun:
    """Transcripts in input order, and how fast they were made.

    ``segments`` (when given) holds, per input, the ``(start s, end s, text)`` of each piece a long input was cut
    into (one piece for a short input); ``warnings`` names inputs that were not transcribed and why.
    """

    texts: list[str]
    audio_seconds: float
    wall_seconds: float
    segments: list[list[tuple[float, float, str]]] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def rtf(self) -> float | None:
        """Real-time factor: wall seconds per second of audio; None when no audio was transcribed."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else None

    def speed(self) -> str:
        """One line for the user: audio, wall time, RTF."""
        rtf = "-" if self.rtf is None else f"{self.rtf:.3f}"
        return f"{self.audio_seconds:.2f} s of audio in {self.wall_seconds:.2f} s: RTF {rtf}"


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def audio_item(path: str | Path, utt_id: str | None = None, manifest: str | None = None,
               line: int | None = None) -> AudioItem:
    """An :class:`AudioItem` for ``path`` after reading its header; a missing or unreadable file is an
    :class:`InputError` naming the manifest line when there is one, else the file."""
    path = str(path)
    where = path if manifest is None else f"{manifest}:{line}"
    if not Path(path).is_file():
        raise InputError(f"audio file not found: {path}" if manifest else "audio file not found", manifest or path,
                         line)
    try:
        _, duration = audio_info(path)
    except InputError as exc:
        if manifest is None:
            raise
        raise InputError(f"audio {path}: {exc.message}", manifest, line) from None
    return AudioItem(utt_id if utt_id is not None else Path(path).stem, path, duration, where)


def manifest_items(manifest: str | Path, skipped: list[str] | None = None) -> list[tuple[AudioItem, Utterance]]:
    """The records of a manifest that have audio (id, text, entities, domain, source: what scoring reads; the
    source gives the voice family), each with its :class:`AudioItem`.

    Text-only records are skipped and their locations (``file:line [id]``) appended to ``skipped``;
    without that list they are reported with :func:`warnings.warn`, so they are never lost silently.
    """
    found: list[tuple[AudioItem, Utterance]] = []
    text_only: list[str] = []
    for entry in iter_manifest(manifest):
        record = entry.record
        if record.audio is None:
            text_only.append(f"{entry.where()} [{record.id}]")
            continue
        # Keep only what scoring reads, so a manifest with long alignments does not sit in memory.
        scored = Utterance(id=record.id, text=record.text, entities=record.entities, domain=record.domain,
                           source=record.source)
        found.append((audio_item(record.audio, record.id, entry.path, entry.line), scored))
    _report_skipped(text_only, skipped)
    return found


def collect_inputs(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[AudioItem]:
    """Audio files and/or JSONL manifests (by suffix: ``.jsonl``/``.json``) -> audio items in input order.

    An audio file's id is its file stem; a manifest record keeps its id. Ids must be unique (hypothesis
    files are matched by id), so a repeated id is an :class:`InputError` naming both places. Text-only
    manifest records are handled as in :func:`manifest_items`.
    """
    items: list[AudioItem] = []
    text_only: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise InputError("is a directory; pass audio files and/or JSONL manifests", path)
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            items += [item for item, _ in manifest_items(path, text_only)]
        else:
            items.append(audio_item(path))
    _check_unique(items)
    _report_skipped(text_only, skipped)
    return items


def describe_skipped(skipped: Sequence[str], show: int = 3) -> str:
    """One line: how many text-only records were skipped, and the first few locations."""
    more = f", ... ({len(skipped) - show} more)" if len(skipped) > show else ""
    return f"skipped {len(skipped)} text-only record(s) without audio (first: {', '.join(skipped[:show])}{more})"


def _report_skipped(text_only: list[str], skipped: list[str] | None) -> None:
    # The caller's list when it reports them itself (the CLI), else a warning: never silently dropped.
    if skipped is not None:
        skipped.extend(text_only)
    elif text_only:
        warnings.warn(describe_skipped(text_only), stacklevel=3)


def _check_unique(items: Sequence[AudioItem]) -> None:
    first: dict[str, AudioItem] = {}
    for item in items:
        if item.id in first:
            raise InputError(f"utterance id {item.id!r} appears twice ({first[item.id].where} and {item.where}); "
                             "ids of audio files come from their file names, so rename one or use a manifest")
        first[item.id] = item


# ----------------------------------------------------------------------------------------------------------------
# Models


OnBatch = Callable[[Sequence[int], Sequence[str]], None]


class Transcriber:
    """A loaded ASR model; :meth:`transcribe` returns transcripts in input order with timing."""

    kind: str  # "speech-llm" or "whisper"

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def transcribe(self, items: Sequence[AudioItem], *, batch_size: int = 8, beam_size: int = 1,
                   max_new_tokens: int | None = None, context: str | None = None, progress: bool = True,
                   on_batch: OnBatch | None = None) -> TranscriptionRun:
        """Transcribe ``items``; ``max_new_tokens=None`` means the model's default limit.

        ``on_batch(indices, texts)`` is called as transcripts become final (indices into ``items``), e.g. to
        save them so an interrupted run can resume (:func:`transcribe_resumable`).
        """
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if beam_size < 1:
            raise ConfigError(f"beam size must be >= 1, got {beam_size}")
        if not items:
            return TranscriptionRun([], 0.0, 0.0)
        report = on_batch or (lambda indices, texts: None)
        max_seconds = self.max_segment_seconds(max_new_tokens, context)
        start = time.perf_counter()
        warned = [f"{item.where}: {item.duration:.3f} s of audio is shorter than the {MIN_AUDIO_SECONDS} s minimum; "
                  "not transcribed (empty transcript)" for item in items if item.duration < MIN_AUDIO_SECONDS]
        short = [i for i, item in enumerate(items) if item.duration < MIN_AUDIO_SECONDS]
        if short:
            report(short, [""] * len(short))
        with tempfile.TemporaryDirectory(prefix="speechbraid-pieces-") as scratch:
            pieces, owner, spans = _cut_long_inputs(items, max_seconds, Path(scratch))
            done = [0] * len(items)
            pieces_of: list[list[int]] = [[] for _ in items]
            for k, i in enumerate(owner):
                pieces_of[i].append(k)
            piece_texts = [""] * len(pieces)

            def collect(indices: Sequence[int], texts: Sequence[str]) -> None:
                finished = []
                for k, text in zip(indices, texts, strict=True):
                    piece_texts[k] = text
                    done[owner[k]] += 1
                    if done[owner[k]] == len(pieces_of[owner[k]]):
                        finished.append(owner[k])
                if finished:  # an input is final once all its pieces are
                    report(finished, [stitch([piece_texts[k] for k in pieces_of[i]]) for i in finished])

            if pieces:
                piece_texts = self._transcribe(pieces, batch_size, beam_size, max_new_tokens, context, progress,
                                               collect)
        texts = [""] * len(items)
        segments: list[list[tuple[float, float, str]]] = [[] for _ in items]
        for k, i in enumerate(owner):
            segments[i].append((spans[k][0], spans[k][1], piece_texts[k]))
        for i, parts in enumerate(segments):
            texts[i] = stitch(text for _, _, text in parts)
        wall = time.perf_counter() - start
        return TranscriptionRun(texts, sum(item.duration for item in items), wall, segments, tuple(warned))

    def max_segment_seconds(self, max_new_tokens: int | None, context: str | None) -> float:
        """The longest piece of audio this model is given at once; longer inputs are cut (module docstring)."""
        return DEFAULT_SEGMENT_SECONDS

    def _transcribe(self, items: Sequence[AudioItem], batch_size: int, beam_size: int, max_new_tokens: int | None,
                    context: str | None, progress: bool, on_batch: OnBatch) -> list[str]:
        raise NotImplementedError


def _cut_long_inputs(items: Sequence[AudioItem], max_seconds: float, scratch: Path
                     ) -> tuple[list[AudioItem], list[int], list[tuple[float, float]]]:
    """The pieces to transcribe: an input no longer than ``max_seconds`` as it is, a longer one cut at pauses into
    WAVs under ``scratch``; inputs below the minimum duration are left out. Returns (pieces, input index of each
    piece, (start s, end s) of each piece within its input)."""
    from speechbraid.data.audio import load_audio, write_wav
    from speechbraid.inference.longform import plan_segments

    pieces: list[AudioItem] = []
    owner: list[int] = []
    spans: list[tuple[float, float]] = []
    for i, item in enumerate(items):
        if item.duration < MIN_AUDIO_SECONDS:
            continue
        if item.duration <= max_seconds:
            pieces.append(item)
            owner.append(i)
            spans.append((0.0, item.duration))
            continue
        samples, rate = load_audio(item.path)
        for k, (a, b) in enumerate(plan_segments(samples, rate, max_seconds)):
            path = scratch / f"{i:06d}-{k:04d}.wav"
            write_wav(path, samples[a:b], rate)
            pieces.append(AudioItem(f"{item.id}@{k}", str(path), (b - a) / rate,
                                    f"{item.where} [{a / rate:.2f}-{b / rate:.2f} s]"))
            owner.append(i)
            spans.append((a / rate, b / rate))
    return pieces, owner, spans


# llm: the speech LLM decodes; llm-ctc: the speech LLM's beam search scored jointly with the CTC bridge's prefix
# probabilities (inference/ctc_prefix.py); ctc: the CTC bridge's greedy spelling; ctc-lm: the bridge's beam search
# fused with a word n-gram LM (inference/ctc_beam.py) - the model directory's lm.arpa.gz unless another ARPA file
DECODERS = ("llm", "llm-ctc", "ctc", "ctc-lm")
PRECISIONS = ("auto", "bf16", "fp32")  # the speech LLM's decoding autocast (fp16 needs care it does not get here)
DEFAULT_CTC_WEIGHT = 0.5
GUIDES = 4  # llm-ctc: the bridge's n-best transcripts whose next tokens the LLM's beam also tries
MODEL_LM_FILE = "lm.arpa.gz"


class SpeechLLMTranscriber(Transcriber):
    """A speechbraid speech LLM decoding ``[context][speech][<|asr|>]`` prompts until the tokenizer's EOS;
    ``decoder="llm-ctc"`` scores the LLM's beam jointly with the CTC bridge (weight ``ctc_weight``; models with a
    spelling bridge); ``decoder="ctc"`` reads the CTC bridge's greedy output instead (no LLM step);
    ``decoder="ctc-lm"`` beam-searches the bridge's spelling with a word n-gram LM (``lm``: an ARPA file; default
    the model directory's :data:`MODEL_LM_FILE`). The LLM decodes under ``precision``'s autocast
    (:func:`speechbraid.device.autocast_dtype`: ``auto`` is bf16 where native); the CTC bridge's posteriors stay
    fp32."""

    kind = "speech-llm"

    def __init__(self, model_dir: Path, device: str | None = None, decoder: str = "llm",
                 lm: str | Path | None = None, ctc_weight: float = DEFAULT_CTC_WEIGHT, precision: str = "auto") -> None:
        from speechbraid.device import pick_device
        from speechbraid.layouts.tokenizer import HFTextTokenizer
        from speechbraid.models.build import load_speech_llm

        super().__init__(model_dir)
        self.device = pick_device(device)
        self.amp = _amp(self.device, precision)
        self.model, self.hf_tokenizer, self.config = load_speech_llm(model_dir, self.device)
        self.decoder = decoder
        self.ctc_weight = ctc_weight
        self._check_decoder(model_dir, decoder, lm)
        self.beam, self.words = self._lm_decoders(model_dir, decoder, lm)
        self.tokenizer = HFTextTokenizer(self.hf_tokenizer)
        self.features = self.config.feature_config.extract_file

    @classmethod
    def from_model(cls, model: SpeechLLM, hf_tokenizer: PreTrainedTokenizerBase, config: ModelConfig,
                   features: Callable[[str], torch.Tensor] | None = None,
                   name: str = "<in-memory model>", amp: torch.dtype | None = None) -> SpeechLLMTranscriber:
        """A transcriber over a speech LLM already in memory (the trainer's dev WER), decoding with the LLM exactly
        as one loaded from disk would, under autocast ``amp`` (the trainer's); ``features`` (e.g. the trainer's
        feature cache) defaults to the config's extractor. The caller owns the model's train/eval mode and grad
        state."""
        from speechbraid.layouts.tokenizer import HFTextTokenizer

        self = cls.__new__(cls)
        Transcriber.__init__(self, Path(name))
        self.device = next(model.parameters()).device
        self.amp = amp
        self.model, self.hf_tokenizer, self.config = model, hf_tokenizer, config
        self.decoder, self.beam, self.words, self.ctc_weight = "llm", None, None, DEFAULT_CTC_WEIGHT
        self.tokenizer = HFTextTokenizer(hf_tokenizer)
        self.features = features or config.feature_config.extract_file
        return self

    def _check_decoder(self, model_dir: Path, decoder: str, lm: str | Path | None) -> None:
        if decoder not in DECODERS:
            raise ConfigError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if decoder != "llm" and self.model.ctc is None:
            raise ConfigError(f"the model {model_dir} has no CTC bridge (model.ctc); use --decoder llm")
        if lm is not None and decoder not in ("ctc-lm", "llm-ctc"):
            raise ConfigError(f"an n-gram LM ({lm}) is used only by --decoder ctc-lm and llm-ctc, not {decoder}")
        if decoder in ("llm-ctc", "ctc-lm") and self.model.ctc.spelling is None:
            raise ConfigError(f"--decoder {decoder} needs a spelling CTC bridge (model.ctc.units: chars); {model_dir} "
                              "spells with LLM tokens")
        DecodeConfig(ctc_weight=self.ctc_weight)  # a bad weight fails here, before any audio is read

    def _lm_decoders(self, model_dir: Path, decoder: str, lm: str | Path | None) -> tuple[Any, Any]:
        """The bridge's beam search (ctc-lm's decoder; llm-ctc's guide) and llm-ctc's word fusion: ctc-lm's n-gram
        is the model's LM unless ``lm`` names one, llm-ctc's is ``lm`` (none without it)."""
        from speechbraid.inference.ctc_beam import CTCBeamDecoder, WordFusion
        from speechbraid.models.ngram_lm import NgramLM

        if decoder == "llm-ctc":
            ngram = NgramLM.read_arpa(lm) if lm is not None else None
            return CTCBeamDecoder(self.model.ctc.labels(), ngram), (WordFusion(ngram) if ngram is not None else None)
        if decoder != "ctc-lm":
            return None, None
        path = Path(lm) if lm is not None else model_dir / MODEL_LM_FILE
        if lm is None and not path.is_file():
            raise ConfigError(f"the model {model_dir} has no n-gram LM ({MODEL_LM_FILE}); build one with "
                              "'speechbraid ngram-lm --text ... --out MODEL/lm.arpa.gz' or pass --lm FILE.arpa")
        return CTCBeamDecoder(self.model.ctc.labels(), NgramLM.read_arpa(path)), None

    def _transcribe(self, items: Sequence[AudioItem], batch_size: int, beam_size: int, max_new_tokens: int | None,
                    context: str | None, progress: bool, on_batch: OnBatch) -> list[str]:
        from tqdm import tqdm

        from speechbraid.device import autocast
        from speechbraid.inference.ctc_prefix import CTCPrefixScorer
        from speechbraid.inference.decode import asr_prompt, generate

        # joint decoding ranks hypotheses by their summed scores: the CTC part is a whole-transcript probability that
        # already punishes texts too short or too long for the audio, and dividing by the token count would favour
        # tokens the bridge does not score (punctuation)
        config = DecodeConfig(max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, beam_size=beam_size,
                              stop_ids=(self.tokenizer.eos_id,), ctc_weight=self.ctc_weight,
                              length_penalty=0.0 if self.decoder == "llm-ctc" else 1.0)
        # Sorting by duration keeps the padding inside each batch small; texts go back to input order.
        order = sorted(range(len(items)), key=lambda i: items[i].duration)
        texts = [""] * len(items)

        def batch_texts(batch: list[int]) -> list[str]:
            paths = [str(items[i].path) for i in batch]
            if self.decoder == "ctc-lm":  # the CTC bridge's beam search with the n-gram LM, no LLM step
                return [self.beam.decode(scores.numpy()) for scores in self.model.ctc_log_probs(paths, self.features)]
            if self.decoder == "ctc":  # the CTC bridge alone: greedy, no LLM step
                return [self.decode(h.tokens) for h in self.model.ctc_hypotheses(paths, self.features)]
            prompts = [asr_prompt(Utterance(items[i].id, "", audio=items[i].path, duration=items[i].duration),
                                  context, self.tokenizer) for i in batch]
            limit = max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS,
                                          math.ceil(TOKENS_PER_SECOND * max(items[i].duration for i in batch)) + 4)
            scorers = None
            if self.decoder == "llm-ctc":  # the bridge's beam search guides the LLM's (its n-best are proposed)
                labels, normalize = self.model.ctc.labels(), self.model.ctc.spelling.normalize
                scorers = [CTCPrefixScorer(scores, labels, self.decode, normalize, self.words,
                                           self.beam.n_best(scores.numpy(), GUIDES), self._tokenize)
                           for scores in self.model.ctc_log_probs(paths, self.features)]
            with autocast(self.device, self.amp):
                results = generate(self.model, prompts, self.features, replace(config, max_new_tokens=limit),
                                   scorers=scorers)
            return [self.decode(r.tokens) for r in results]

        with tqdm(total=len(items), desc="transcribe", unit="utt", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                for i, text in zip(batch, batch_texts(batch), strict=True):
                    texts[i] = text
                on_batch(batch, [texts[i] for i in batch])
                bar.update(len(batch))
        return texts

    def max_segment_seconds(self, max_new_tokens: int | None, context: str | None) -> float:
        """At most :data:`DEFAULT_SEGMENT_SECONDS`, what the encoder takes (Whisper: 30 s), and what the LLM's
        context (``max_position_embeddings``) leaves after the prompt's text and the transcript's tokens: one
        position per adapter frame (``frame_rate`` per second). No room for a minimum piece is a ConfigError."""
        limit = DEFAULT_SEGMENT_SECONDS
        encoder_frames = getattr(self.model.encoder, "max_frames", None)  # feature frames at 100 per second
        if encoder_frames is not None:
            limit = min(limit, encoder_frames / 100.0)
        positions = self.model.max_positions
        if positions is not None:
            new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS
            text = len(self.tokenizer.encode(context)) if context else 0
            left = positions - new_tokens - text - 2  # <|asr|> and one frame of rounding
            seconds = left / self.model.frame_rate
            if seconds < 2.0:
                raise ConfigError(f"the LLM of {self.model_dir} takes {positions} positions; {new_tokens} new tokens "
                                  f"and {text} context tokens leave room for {max(seconds, 0):.1f} s of speech "
                                  f"({self.model.frame_rate:g} positions per second): lower --max-new-tokens or "
                                  "shorten --context")
            limit = min(limit, seconds)
        return limit

    def _tokenize(self, text: str) -> list[int]:
        return list(self.hf_tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, tokens: Sequence[int]) -> str:
        """Transcript text of generated ids: text tokens only (specials and speech units are not text)."""
        text_ids = [t for t in tokens if self.model.vocab.kind_of(t) == "text"]
        return self.hf_tokenizer.decode(text_ids, skip_special_tokens=True).strip()


class WhisperTranscriber(Transcriber):
    """A Hugging Face Whisper checkpoint, run through the project's judge (greedy, English, no timestamps)."""

    kind = "whisper"

    def __init__(self, model_dir: Path, device: str | None = None, precision: str = "auto") -> None:
        from speechbraid.models.judge import WhisperJudge

        super().__init__(model_dir)
        self.judge = WhisperJudge(model_dir, device, precision)  # loaded once, so the RTF covers transcription only

    def _transcribe(self, items: Sequence[AudioItem], batch_size: int, beam_size: int, max_new_tokens: int | None,
                    context: str | None, progress: bool, on_batch: OnBatch) -> list[str]:
        # The judge decodes greedily with Whisper's own length limit and no prompt; refuse rather than ignore.
        unsupported = [name for name, is_set in (("beam size > 1", beam_size > 1),
                                                 ("max_new_tokens", max_new_tokens is not None),
                                                 ("a text context", bool(context))) if is_set]
        if unsupported:
            raise ConfigError(f"the Whisper model {self.model_dir} decodes greedily with its own settings; "
                              f"these options are for speech LLMs only: {', '.join(unsupported)}")
        if progress:
            print(f"transcribing {len(items)} file(s) with Whisper ({self.model_dir})", file=sys.stderr)
        return self.judge.transcribe([item.path for item in items], batch_size, on_batch=on_batch)

    def max_segment_seconds(self, max_new_tokens: int | None, context: str | None) -> float:
        from speechbraid.models.judge import CHUNK_SECONDS

        return float(CHUNK_SECONDS)  # Whisper's window; longer pieces would take its slower sequential path


def _amp(device: torch.device, precision: str) -> torch.dtype | None:
    from speechbraid.device import autocast_dtype

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return autocast_dtype(device, precision)


def load_transcriber(name_or_dir: str | Path, device: str | None = None, decoder: str = "llm",
                     lm: str | Path | None = None, ctc_weight: float = DEFAULT_CTC_WEIGHT,
                     precision: str = "auto") -> Transcriber:
    """Load a model for transcription, deciding its kind from the directory's contents.

    ``speechbraid.json`` -> speech LLM; a Hugging Face ``config.json`` with ``model_type`` ``whisper`` ->
    Whisper. Anything else is a :class:`CheckpointError` naming the directory and what was expected;
    an unknown name is a :class:`ConfigError` listing the known ones. ``device`` defaults to CUDA when
    available, else CPU. ``lm`` is the word n-gram (ARPA) of ``decoder="ctc-lm"``; ``ctc_weight`` the CTC
    bridge's weight under ``decoder="llm-ctc"``; ``precision`` the speech LLM's decoding autocast (auto, bf16,
    fp32), or a Whisper model's weights (auto: bf16 where native, see :mod:`speechbraid.models.judge`).
    """
    model_dir = resolve_model(name_or_dir)
    if device is not None:
        import torch

        try:
            torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if (model_dir / SPEECH_LLM_FILE).is_file():
        return SpeechLLMTranscriber(model_dir, device, decoder, lm, ctc_weight, precision)
    hf_config = model_dir / "config.json"
    if hf_config.is_file():
        try:
            model_type = json.loads(hf_config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise CheckpointError(f"config.json is not a JSON object: {exc}", hf_config) from None
        if model_type == "whisper":
            if decoder != "llm" or lm is not None:
                raise ConfigError(f"the Whisper model {model_dir} has its own decoder; --decoder {decoder} and --lm "
                                  "are for speech LLMs with a CTC bridge")
            return WhisperTranscriber(model_dir, device, precision)
        found = f"a Hugging Face config.json with model_type {model_type!r}"
    else:
        found = "neither"
    raise CheckpointError(
        f"not a model speechbraid can transcribe with: expected {SPEECH_LLM_FILE} (a speech LLM saved by "
        f"'speechbraid train') or a Hugging Face Whisper checkpoint (config.json with model_type 'whisper', e.g. "
        f"from 'speechbraid import-whisper'); found {found}", model_dir)


# ----------------------------------------------------------------------------------------------------------------
# Output and evaluation


def hypothesis_lines(items: Sequence[AudioItem], texts: Sequence[str], as_json: bool) -> list[str]:
    """Output lines: ``{"id", "audio", "text"}`` JSONL (what ``speechbraid score --hyp`` reads) or
    ``path<TAB>text`` (whitespace runs in the text become single spaces so a line stays one record)."""
    if as_json:
        return [json.dumps({"id": item.id, "audio": item.path, "text": text}, ensure_ascii=False)
                for item, text in zip(items, texts, strict=True)]
    return [f"{item.path}\t{' '.join(text.split())}" for item, text in zip(items, texts, strict=True)]


def write_lines(lines: Sequence[str], path: str | Path) -> None:
    """Write lines via a temporary file + rename, so a killed job never leaves a half-written file."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def partial_path(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its finished transcripts until it completes."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def transcribe_resumable(transcriber: Transcriber, items: Sequence[AudioItem], partial: str | Path,
                         **options: Any) -> tuple[TranscriptionRun, int]:
    """:meth:`Transcriber.transcribe` that appends every finished batch to ``partial`` (JSONL), so re-running
    after an interruption transcribes only what is missing.

    Returns the run (all texts in input order; timing covers only the newly transcribed audio) and how
    many transcripts came from ``partial``. The caller deletes ``partial`` once it has written its output.
    """
    partial = Path(partial)
    done = _read_partial(partial, items)
    todo = [item for item in items if item.id not in done]
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as handle:
        def save(indices: Sequence[int], texts: Sequence[str]) -> None:
            for i, text in zip(indices, texts, strict=True):
                handle.write(json.dumps({"id": todo[i].id, "audio": todo[i].path, "text": text}, ensure_ascii=False)
                             + "\n")
            handle.flush()
            os.fsync(handle.fileno())

        run = transcriber.transcribe(todo, on_batch=save, **options)
    new = {item.id: text for item, text in zip(todo, run.texts, strict=True)}
    texts = [done[item.id] if item.id in done else new[item.id] for item in items]
    return TranscriptionRun(texts, run.audio_seconds, run.wall_seconds, warnings=run.warnings), len(done)


def _read_partial(partial: Path, items: Sequence[AudioItem]) -> dict[str, str]:
    """Transcripts saved by an earlier run of the same inputs; a line cut off by a crash is dropped (and
    truncated away, so appending goes on from a clean line end)."""
    audio_of = {item.id: item.path for item in items}
    done: dict[str, str] = {}
    for line_no, obj in read_append_log(partial):
        try:
            utt_id, audio, text = obj["id"], obj["audio"], obj["text"]
        except (KeyError, TypeError) as exc:
            raise InputError(f"unreadable saved transcript ({exc}); delete the file to start over", partial,
                             line_no) from None
        if audio_of.get(utt_id) != audio:
            raise InputError(f"saved transcript of {utt_id!r} ({audio}) is not one of this run's inputs; the file "
                             "belongs to another run: delete it to start over", partial, line_no)
        done[utt_id] = text
    return done


def evaluate_model(model: str | Path | Transcriber, manifest: str | Path, *, batch_size: int = 8,
                   beam_size: int = 1, max_new_tokens: int | None = None, context: str | None = None,
                   device: str | None = None, progress: bool = True, hyps_out: str | Path | None = None,
                   skipped: list[str] | None = None) -> dict[str, Any]:
    """Transcribe every record with audio in ``manifest`` and score it (WER, TER, EER overall, per domain,
    per entity type).

    Returns :func:`~speechbraid.metrics.asr.evaluate`'s dict plus ``model``, ``manifest``,
    ``n`` (utterances scored), ``skipped_text_only``, ``resumed``, ``audio_seconds``, ``wall_seconds`` and ``rtf``.
    ``hyps_out`` also writes the hypotheses as JSONL for ``speechbraid score``, and makes the run resumable
    (:func:`transcribe_resumable`; ``resumed`` counts the reused transcripts, and ``rtf`` covers only the
    newly transcribed ones). Text-only records are
    reported as in :func:`manifest_items` and counted in the result.
    """
    from speechbraid.metrics.asr import evaluate

    text_only: list[str] = []
    pairs = manifest_items(manifest, text_only)
    _report_skipped(text_only, skipped)
    if not pairs:
        raise InputError("no utterances with audio to evaluate", manifest)
    items = [item for item, _ in pairs]
    _check_unique(items)
    transcriber = model if isinstance(model, Transcriber) else load_transcriber(model, device)
    options: dict[str, Any] = dict(batch_size=batch_size, beam_size=beam_size, max_new_tokens=max_new_tokens,
                                   context=context, progress=progress)
    if hyps_out is None:
        run, resumed = transcriber.transcribe(items, **options), 0
    else:
        run, resumed = transcribe_resumable(transcriber, items, partial_path(hyps_out), **options)
        write_lines(hypothesis_lines(items, run.texts, as_json=True), hyps_out)
        partial_path(hyps_out).unlink()
    result = evaluate([record for _, record in pairs], run.texts)
    result.update(model=str(transcriber.model_dir), manifest=str(manifest), n=len(items),
                  skipped_text_only=len(text_only), audio_seconds=run.audio_seconds,
                  resumed=resumed, wall_seconds=run.wall_seconds, rtf=run.rtf, warnings=list(run.warnings))
    return result
