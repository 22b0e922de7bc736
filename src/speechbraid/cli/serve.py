"""``speechbraid serve``: a web page (Gradio) to try a model: transcribe speech, and ask a generation model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechbraid.inference.transcribe import DECODERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        description="Serve a web demo (needs the [web] extra). Transcribe tab: record or upload audio, get its "
        "transcript with the default corpus's entity names (drugs, conditions, banks, products, cards, account "
        "types) marked. With --generator and --vocoder, an Ask tab: a typed or spoken question, answered with text "
        "and speech under a generation pattern; the text streams as it is decoded, and so does the speech when "
        "the ffmpeg program is installed (Gradio encodes the stream with it), else it plays once decoded. The "
        "models load before the server starts, so a wrong directory is an error at once.",
    )
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                        help="ASR model: a speech LLM directory, a Whisper HF checkpoint, or a registered name")
    parser.add_argument("--decoder", choices=DECODERS, default="llm",
                        help="how a speech LLM transcribes (as in 'speechbraid transcribe'; ctc-lm: the demo's best)")
    parser.add_argument("--lm", metavar="FILE.arpa[.gz]", help="word n-gram LM for --decoder ctc-lm or llm-ctc")
    parser.add_argument("--generator", type=Path, metavar="DIR",
                        help="a joint text+speech speech LLM (trained with speech units) for the Ask tab")
    parser.add_argument("--vocoder", type=Path, metavar="DIR", help="the unit vocoder of --generator")
    parser.add_argument("--pattern", default="esi", help="generation pattern of the Ask tab (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=512, help="decoding steps per answer at most "
                        "(default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; "
                        "0.0.0.0 makes the page reachable from other machines)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.web.app import build_app, gradio, launch
    from speechbraid.web.demo import Demo

    gradio()  # a missing [web] extra is named before minutes of model loading
    demo = Demo.load(args.model, device=args.device, generator=args.generator, vocoder=args.vocoder,
                     pattern=args.pattern, max_steps=args.max_steps, decoder=args.decoder, lm=args.lm)
    if demo.lexicon.missing:
        print(f"speechbraid serve: entities not marked: {'; '.join(demo.lexicon.missing)}", file=sys.stderr)
    page = build_app(demo)
    url = launch(page, args.host, args.port)
    print(f"speechbraid serve: {url} (Ctrl+C stops)", file=sys.stderr)
    page.block_thread()  # until Ctrl+C, which closes the server
    return 0
