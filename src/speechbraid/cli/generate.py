"""``speechbraid generate``: answer a question (text or a WAV) with text AND speech under a generation pattern."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from speechbraid.cli.options import add_options, from_args
from speechbraid.errors import ConfigError, InputError
from speechbraid.inference.settings import PatternDecodeConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        description="Decode a joint text-speech response with a trained speech LLM (one that has speech units) "
        "under a generation pattern (interleaved, esi, parallel), print its text and write its speech as a "
        "16 kHz WAV through a unit vocoder. The question is text (positional) or audio (--wav). With --stream "
        "the text is printed token by token and the audio is synthesised chunk by chunk while decoding runs.",
    )
    parser.add_argument("prompt", nargs="?", help="the question as text (or use --wav)")
    parser.add_argument("--wav", type=Path, help="the question as audio")
    parser.add_argument("--model", required=True, type=Path, help="speech LLM directory")
    parser.add_argument("--vocoder", required=True, type=Path, help="unit vocoder directory")
    parser.add_argument("--pattern", default="esi", help="generation pattern (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="output WAV")
    parser.add_argument("--stream", action="store_true", help="print text and synthesise audio as they are decoded")
    add_options(parser, PatternDecodeConfig)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from speechbraid.data.audio import audio_info, write_wav
    from speechbraid.data.questions import SQAQuestion
    from speechbraid.device import pick_device
    from speechbraid.evaluation.generation import SAMPLE_RATE, decode_streamed, generation_prompt
    from speechbraid.evaluation.modality_gap import as_text_tokenizer
    from speechbraid.inference.patterns import generate_response
    from speechbraid.models.build import load_speech_llm
    from speechbraid.patterns import get_pattern
    from speechbraid.units.vocoder import UnitVocoder

    if (args.prompt is None) == (args.wav is None):
        raise ConfigError("give the question either as text or with --wav, not both")
    try:
        pattern = get_pattern(args.pattern)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.wav is not None:
        if not args.wav.is_file():
            raise InputError("audio file not found", args.wav)
        question = SQAQuestion("prompt", "speech", "", ("",), str(args.wav), audio_info(args.wav)[1])
        modality = "speech"
    else:
        if not args.prompt.strip():
            raise ConfigError("the question text is empty")
        question = SQAQuestion("prompt", "text", args.prompt.strip(), ("",))
        modality = "text"
    model, hf_tokenizer, model_config = load_speech_llm(args.model, pick_device(args.device))
    vocoder = UnitVocoder.load(args.vocoder)
    if vocoder.config.n_units != model.vocab.num_units:
        raise ConfigError(f"the vocoder speaks {vocoder.config.n_units} units, the model {model.vocab.num_units}")
    tokenizer = as_text_tokenizer(hf_tokenizer)
    prompt = generation_prompt(question, modality, tokenizer)  # type: ignore[arg-type]
    features = model_config.feature_config.extract_file
    config = from_args(PatternDecodeConfig, args)
    start = time.perf_counter()
    if args.stream:
        printed = ""
        text_ids: list[int] = []

        def on_text(index: int, chunk: object) -> None:
            nonlocal printed
            text_ids.extend(chunk.tokens)  # type: ignore[attr-defined]
            text = tokenizer.decode(text_ids)
            if text.startswith(printed) and not text.endswith("\ufffd"):  # wait for whole UTF-8 characters
                sys.stdout.write(text[len(printed):])
                sys.stdout.flush()
                printed = text

        responses, waves, first_audio, _ = decode_streamed(model, [prompt], pattern, vocoder, features, config,
                                                            on_text=on_text)
        audio = waves[0]
        print(tokenizer.decode(list(responses[0].text))[len(printed):])
    else:
        responses = generate_response(model, [prompt], pattern, features, config)
        units = responses[0].units
        audio = vocoder.units_to_audio(units) if units else np.zeros(0, dtype=np.float32)
        first_audio = {}
        print(tokenizer.decode(list(responses[0].text)).strip())
    response = responses[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(args.out, audio, SAMPLE_RATE)
    first = f", first audio after {first_audio[0]:.2f} s" if 0 in first_audio else ""
    print(f"{args.out}: {len(audio) / SAMPLE_RATE:.2f} s of speech from {len(response.units)} units; "
          f"{response.steps} decoding steps ({response.finish_reason}), {time.perf_counter() - start:.2f} s{first}",
          file=sys.stderr)
    return 0
