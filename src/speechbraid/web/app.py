"""The Gradio page of ``speechbraid serve``: a Transcribe tab (audio in, transcript with the entities marked) and,
with a generation model, an Ask tab (a typed or spoken question in, the answer's text and speech out as they are
decoded).

A request that fails shows a one-line message in the page (and a toast), never a traceback: the toolkit's own
errors say what is wrong with the input; anything else is logged with its traceback on the server and named in
one line on the page.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from speechbraid.errors import ConfigError, SpeechbraidError
from speechbraid.extras import require
from speechbraid.web.demo import SAMPLE_RATE, Demo

log = logging.getLogger(__name__)

TITLE = "speechbraid"
# one colour per entity type of the default corpus; any other type gets Gradio's own colour
COLORS = {"drug": "#f4a261", "condition": "#e76f51", "institution": "#2a9d8f", "product": "#8ab17d",
          "card_name": "#e9c46a", "account_type": "#a8dadc"}


def gradio() -> Any:
    """The ``gradio`` module, or the error naming the ``[web]`` extra."""
    # Gradio would otherwise report usage to its makers: the toolkit runs offline and sends nothing
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return require("gradio", "web", "the web demo (speechbraid serve)")


def streams_audio() -> bool:
    """Whether the answer's speech can be streamed: Gradio encodes an audio stream with the ``ffmpeg`` program,
    so without it the page plays the whole answer once it is decoded (the text streams either way)."""
    return shutil.which("ffmpeg") is not None


def _markdown_text(text: str) -> str:
    """``text`` shown literally by Markdown (file names have underscores, messages have brackets)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def _failure(gr: Any, what: str, exc: BaseException) -> str:
    """The page's one-line message for a failed request (and a toast); the traceback of a bug goes to the log."""
    if isinstance(exc, SpeechbraidError):
        message = str(exc)
    else:
        log.error("%s failed", what, exc_info=exc)
        message = f"{what} failed ({type(exc).__name__}: {exc}); the server log has the details"
    gr.Warning(message)
    return f"**Error:** {_markdown_text(message)}"


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit WAV bytes: what Gradio's streamed audio output reads without ffmpeg decoding (and it does not
    rescale each chunk to its own peak, as it would a numpy chunk: the loudness stays the same across chunks)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def build_app(demo: Demo, *, stream_audio: bool | None = None) -> Any:
    """The page (a ``gradio.Blocks``) over ``demo``; ``stream_audio`` defaults to :func:`streams_audio`."""
    gr = gradio()
    stream_audio = streams_audio() if stream_audio is None else stream_audio

    def transcribe(path: str | None) -> tuple[Any, str, str]:
        try:
            result = demo.transcribe(path)
        except Exception as exc:  # shown in the page: a request must never end in a traceback
            return None, "", _failure(gr, "transcription", exc)
        status = (f"{result.audio_seconds:.2f} s of audio transcribed in {result.wall_seconds:.2f} s; "
                  f"{result.entities} entit{'y' if result.entities == 1 else 'ies'} marked")
        notes = [*result.warnings, *(f"not marked: {m}" for m in demo.lexicon.missing)]
        return result.pieces, result.text, _markdown_text("; ".join([status, *notes]))

    def answer(question: str | None, audio: str | None) -> Iterator[tuple[Any, Any, Any]]:
        generator = demo.generator
        if generator is None:  # the tab exists only with a generator
            return
        # the previous answer goes (a streamed output starts afresh by itself)
        yield "", gr.skip() if stream_audio else None, ""
        pieces: list[np.ndarray] = []
        try:
            for update in generator.answer(question, audio):
                if update.done:
                    whole = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
                    final_audio = (gr.skip() if stream_audio
                                   else (SAMPLE_RATE, (np.clip(whole, -1, 1) * 32767).astype(np.int16)))
                    yield update.text, final_audio, _markdown_text(update.summary)
                elif update.audio is not None:
                    pieces.append(update.audio)
                    if stream_audio:
                        yield update.text, wav_bytes(update.audio), gr.skip()
                else:
                    yield update.text, gr.skip(), gr.skip()
        except Exception as exc:  # shown in the page, as above
            yield "", gr.skip(), _failure(gr, "answering", exc)

    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(f"# {TITLE}\nDecoder-only speech LLM demo. Transcribe: `{demo.transcriber.model_dir}`"
                    + (f"; answer: `{demo.generator.pattern.name}` pattern" if demo.generator else ""))
        with gr.Tab("Transcribe", id="asr"):
            audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech (record or upload)",
                                elem_id="asr-audio")
            run = gr.Button("Transcribe", variant="primary", elem_id="asr-button")
            marked = gr.HighlightedText(label="Transcript, entities marked", color_map=COLORS, show_legend=True,
                                        elem_id="asr-entities")
            plain = gr.Textbox(label="Transcript", interactive=False, elem_id="asr-transcript")
            status = gr.Markdown(elem_id="asr-status")
            # a click while the previous request runs is served after it, not dropped (Gradio's default is "once")
            run.click(transcribe, audio_in, [marked, plain, status], trigger_mode="always_last")
        if demo.generator is not None:
            with gr.Tab("Ask", id="ask"):
                question = gr.Textbox(label="Question", placeholder="What is the opposite of hot?",
                                      elem_id="gen-question")
                spoken = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                  label="... or ask it aloud (used instead of the typed question)", elem_id="gen-audio")
                ask = gr.Button("Answer", variant="primary", elem_id="gen-button")
                text_out = gr.Textbox(label="Answer", interactive=False, elem_id="gen-answer")
                speech_out = gr.Audio(label="Answer, spoken" + ("" if stream_audio else
                                                                " (whole, once decoded: no ffmpeg to stream it)"),
                                      streaming=stream_audio, autoplay=True, interactive=False, elem_id="gen-speech")
                gen_status = gr.Markdown(elem_id="gen-status")
                ask.click(answer, [question, spoken], [text_out, speech_out, gen_status], trigger_mode="always_last")
    return page


def launch(page: Any, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Serve ``page`` at http://host:port/ from a thread and return that URL; ``page.block_thread()`` waits (until
    Ctrl+C), ``page.close()`` stops it. A port that is taken is a ConfigError, not a traceback."""
    page.queue()  # generators (the streamed answer) and one request at a time per model need the queue
    try:
        # ssr_mode off: server-side rendering would need Node.js; the page is served by Python alone. quiet: the
        # CLI prints its own line (Gradio's would offer share=True, which the command does not have)
        page.launch(server_name=host, server_port=port, prevent_thread_lock=True, ssr_mode=False, share=False,
                    quiet=True)
    except OSError:  # Gradio's own message names its launch() arguments, which mean nothing to a CLI user
        raise ConfigError(f"cannot serve on {host}:{port}: the port is taken (or the address is not this "
                          "machine's); choose another with --port / --host") from None
    return f"http://{host}:{port}/"
