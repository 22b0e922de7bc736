"""Command-line options derived from a config dataclass: flags, types, defaults, help, and the dataclass back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from speechbraid.cli.options import add_options, from_args


@dataclass(frozen=True)
class Example:
    kind: Literal["a", "b"] = "a"  # which kind
    model_dir: str | None = None  # where the model is
    rate_hz: float = field(default=25.0, metadata={"choices": (25.0, 12.5)})  # per second
    fast: bool = False
    sizes: list[int] = field(default_factory=list)
    steps: int = 3  # 100% of them (a literal percent sign in a help text)


def parser(*names: str) -> argparse.ArgumentParser:
    out = argparse.ArgumentParser()
    add_options(out, Example, *names, flags={"rate_hz": "--rate"})
    return out


def test_flags_types_defaults_and_help() -> None:
    assert from_args(Example, parser().parse_args([])) == Example()
    args = parser().parse_args(["--kind", "b", "--model-dir", "m", "--rate", "12.5", "--fast", "--sizes", "1", "2",
                                "--steps", "7"])
    assert from_args(Example, args) == Example("b", "m", 12.5, True, [1, 2], 7)
    for bad in (["--kind", "c"], ["--rate", "10"], ["--steps", "x"]):
        with pytest.raises(SystemExit):
            parser().parse_args(bad)
    text = parser().format_help()
    assert "which kind" in text and "where the model is" in text and "per second" in text
    assert "100% of them" in text  # regression: argparse read "% o" as a format and --help crashed
    assert "--rate-hz" not in text


def test_only_the_named_fields_and_extra_values() -> None:
    args = parser("steps").parse_args(["--steps", "5"])
    assert vars(args) == {"steps": 5}
    assert from_args(Example, args, kind="b") == Example(kind="b", steps=5)


def test_a_field_without_default_is_required_and_a_bool_defaulting_to_true_refused() -> None:
    @dataclass
    class Needs:
        path: str

    needs = argparse.ArgumentParser()
    add_options(needs, Needs)
    with pytest.raises(SystemExit):
        needs.parse_args([])
    assert from_args(Needs, needs.parse_args(["--path", "x"])) == Needs("x")

    @dataclass
    class On:
        enabled: bool = True

    on = argparse.ArgumentParser()
    add_options(on, On)  # a switch on by default can be turned off
    assert from_args(On, on.parse_args([])) == On(True)
    assert from_args(On, on.parse_args(["--no-enabled"])) == On(False)


def test_generate_takes_every_decoding_setting_and_checks_it() -> None:
    from speechbraid.cli.main import build_parser
    from speechbraid.errors import ConfigError
    from speechbraid.inference.settings import PatternDecodeConfig

    cli = build_parser("generate")
    base = ["generate", "hi", "--model", "m", "--vocoder", "v", "--out", "o.wav"]
    args = cli.parse_args([*base, "--do-sample", "--temperature", "0.7", "--top-k", "5", "--unit-chunk", "4"])
    config = from_args(PatternDecodeConfig, args)
    assert config == PatternDecodeConfig(do_sample=True, temperature=0.7, top_k=5, unit_chunk=4)
    with pytest.raises(ConfigError, match="temperature"):
        from_args(PatternDecodeConfig, cli.parse_args([*base, "--temperature", "0"]))


# commands whose parser still needs a config class from a module that imports torch at its top (issue 13 follow-up)
HEAVY_HELP = {"convert", "features", "units", "pretrain-lm", "import-whisper", "experiment"}


def test_help_of_the_other_commands_imports_no_heavy_library() -> None:
    """``speechbraid COMMAND --help`` answers in ~0.1 s when parsing imports neither torch nor transformers nor the
    web and plotting stacks; each command is checked in a fresh interpreter (modules stay imported)."""
    import subprocess
    import sys

    from speechbraid.cli.main import COMMANDS

    probe = (
        "import contextlib, io, sys\n"
        "from speechbraid.cli.main import build_parser\n"
        "name = sys.argv[1]\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    build_parser(name).parse_args([name, '--help'])\n"
        "assert out.getvalue().startswith('usage:'), out.getvalue()[:200]\n"
        "print(','.join(m for m in ('torch', 'transformers', 'gradio', 'lhotse', 'sklearn', 'matplotlib')\n"
        "               if m in sys.modules))\n"
    )
    heavy = {}
    for name in sorted(set(COMMANDS) - HEAVY_HELP):
        done = subprocess.run([sys.executable, "-c", probe, name], capture_output=True, text=True, check=True)
        if done.stdout.strip():
            heavy[name] = done.stdout.strip()
    assert heavy == {}
