"""``speechbraid serve``: the browser demo (Gradio) around a trained speech LLM."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechbraid.inference.transcribe import DECODERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        description=(
            "Serve a web page (Gradio) to try a speech LLM: record or upload speech and read its transcript with the "
            "known entities marked; with --generator and --vocoder also ask a question and hear the answer streamed "
            "as it is decoded. Needs the [web] extra (pip install 'speechbraid[web]')."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR", help="speech LLM for transcription")
    parser.add_argument("--decoder", choices=DECODERS, default="llm", help="how the model transcribes")
    parser.add_argument("--lm", metavar="FILE.arpa[.gz]", help="word n-gram LM for --decoder ctc-lm")
    parser.add_argument("--entities", nargs="*", default=[], metavar="FILE",
                        help="entities to mark: word lists (one a line) and/or JSONL manifests with entity spans, "
                             "e.g. data/default/text/domain.jsonl")
    parser.add_argument("--generator", metavar="DIR", help="a speech LLM trained with speech units (ESI study model)")
    parser.add_argument("--vocoder", type=Path, metavar="DIR", help="the unit vocoder of --generator's units")
    parser.add_argument("--pattern", default="esi", help="generation pattern of the question tab")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.api import SpeechLLM
    from speechbraid.errors import ConfigError
    from speechbraid.extras import require
    from speechbraid.web.app import build_app, load_entities

    require("gradio", "web", "the web demo")
    if (args.generator is None) != (args.vocoder is None):
        raise ConfigError("--generator and --vocoder go together (the question tab needs both)")
    model = SpeechLLM.from_pretrained(args.model, device=args.device, decoder=args.decoder, lm=args.lm)
    generator = vocoder = None
    if args.generator is not None:
        from speechbraid.units.vocoder import UnitVocoder

        generator = SpeechLLM.from_pretrained(args.generator, device=args.device)
        vocoder = UnitVocoder.load(args.vocoder)
    app = build_app(model, load_entities(args.entities), generator, vocoder, args.pattern)
    app.queue().launch(server_name=args.host, server_port=args.port, show_error=False)
    return 0
