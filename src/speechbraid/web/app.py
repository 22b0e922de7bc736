"""The browser demo (Gradio): speech in -> transcript with its entities marked; a question -> an answer in text and
streamed speech.

:func:`build_app` takes loaded models (so tests and notebooks can build the page around any model) and returns a
``gradio.Blocks``; ``speechbraid serve`` loads the models named on the command line and launches it. Every user
error (an unreadable upload, no audio, an empty question) is shown in the page's status line, never as a trace.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from speechbraid.data.manifest import read_manifest
from speechbraid.errors import SpeechbraidError
from speechbraid.extras import require
from speechbraid.files import read_text_lines

ENTITY_LABEL = "entity"  # the label of entities read from a plain word list (manifests give each entity its type)


def load_entities(paths: Sequence[str | Path]) -> dict[str, str]:
    """Entity surface -> type from plain lists (one entity a line, typed ``entity``) and JSONL manifests (the
    entity spans of their records), e.g. the default corpus's ``text/domain.jsonl``."""
    entities: dict[str, str] = {}
    for path in paths:
        if str(path).endswith((".jsonl", ".json")):
            for record in read_manifest(path):
                entities.update({span.text: span.type for span in record.entities})
        else:
            entities.update(dict.fromkeys(read_text_lines([path]), ENTITY_LABEL))
    return entities


def mark_entities(text: str, entities: dict[str, str]) -> list[tuple[str, str | None]]:
    """``text`` cut into (piece, entity type or None) for ``gradio.HighlightedText``: whole-word, case-blind
    matches of the known entities, the longest first where two overlap."""
    if not text or not entities:
        return [(text, None)]
    by_lower = {surface.lower(): kind for surface, kind in entities.items()}
    names = sorted(by_lower, key=len, reverse=True)
    pattern = re.compile(r"(?<![^\W_])(" + "|".join(re.escape(n) for n in names) + r")(?![^\W_])", re.IGNORECASE)
    pieces: list[tuple[str, str | None]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            pieces.append((text[last:match.start()], None))
        pieces.append((match.group(0), by_lower[match.group(0).lower()]))
        last = match.end()
    if last < len(text):
        pieces.append((text[last:], None))
    return pieces


def build_app(speech_llm: Any, entities: dict[str, str] | None = None, generator: Any | None = None,
              vocoder: Any | None = None, pattern: str = "esi") -> Any:
    """The page: an ASR tab around ``speech_llm`` (a :class:`speechbraid.SpeechLLM`), and, with a ``generator``
    (a SpeechLLM trained with speech units) and its unit ``vocoder``, a question tab answering under ``pattern``
    with the speech streamed as it is decoded."""
    gr = require("gradio", "web", "the web demo")
    entities = entities or {}

    def transcribe(audio_path: str | None) -> tuple[list[tuple[str, str | None]], str]:
        if not audio_path:
            return [], "No audio: record or upload a file first."
        try:
            text = speech_llm.transcribe(audio_path)
        except SpeechbraidError as exc:
            return [], f"Cannot transcribe this audio: {exc.message}"
        found = sum(1 for _, kind in mark_entities(text, entities) if kind)
        return mark_entities(text, entities), f"Transcribed; {found} known entit{'y' if found == 1 else 'ies'}."

    with gr.Blocks(title="speechbraid") as app:
        gr.Markdown("# speechbraid\nSpeech and text braided into one sequence for a decoder-only LLM.")
        with gr.Tab("Transcribe"):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech",
                             elem_id="asr-audio")
            run = gr.Button("Transcribe", variant="primary", elem_id="asr-run")
            transcript = gr.HighlightedText(label="Transcript (entities marked)", elem_id="asr-transcript")
            status = gr.Markdown(elem_id="asr-status")
            run.click(transcribe, inputs=audio, outputs=[transcript, status])
        if generator is not None and vocoder is not None:
            _question_tab(gr, generator, vocoder, pattern)
    return app


def _question_tab(gr: Any, generator: Any, vocoder: Any, pattern: str) -> None:
    from speechbraid.units.vocoder import SAMPLE_RATE

    def answer(question: str) -> Iterator[tuple[str, Any, str]]:
        if not question or not question.strip():
            yield "", None, "Type a question first."
            return
        chunks: queue.Queue[Any] = queue.Queue()
        text_ids: list[int] = []
        done = object()

        def decode() -> None:
            try:
                generator.stream(question, pattern=pattern, vocoder=vocoder,
                                 on_text=lambda tokens: text_ids.extend(tokens),
                                 on_audio=lambda samples: chunks.put(samples))
            except SpeechbraidError as exc:
                chunks.put(exc)
            finally:
                chunks.put(done)

        threading.Thread(target=decode, daemon=True).start()
        while (item := chunks.get()) is not done:
            if isinstance(item, SpeechbraidError):
                yield "", None, f"Cannot answer: {item.message}"
                return
            yield generator.tokenizer.decode(text_ids, skip_special_tokens=True), (SAMPLE_RATE, item), "Speaking..."
        yield generator.tokenizer.decode(text_ids, skip_special_tokens=True), None, f"Answered ({pattern})."

    with gr.Tab("Ask"):
        question = gr.Textbox(label="Question", elem_id="qa-question")
        ask = gr.Button("Answer", variant="primary", elem_id="qa-run")
        text = gr.Textbox(label="Answer (text)", elem_id="qa-text")
        speech = gr.Audio(label="Answer (speech, streamed)", streaming=True, autoplay=True, elem_id="qa-audio")
        status = gr.Markdown(elem_id="qa-status")
        ask.click(answer, inputs=question, outputs=[text, speech, status])

