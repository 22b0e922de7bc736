"""Command-line options derived from a config dataclass, so a command never re-declares a config's fields by hand.

A field ``num_mel_bins: int = 80  # mel bins`` becomes ``--num-mel-bins`` (type int, default 80, help "mel bins"):
the help is the field's trailing comment in its source; ``Literal[...]`` (or ``metadata={"choices": ...}``) gives
choices, ``X | None`` the type X, ``bool`` a switch (``--x`` when off by default, ``--x``/``--no-x`` when on),
``list[X]`` one or more values.
:func:`from_args` builds the dataclass back from the parsed options.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def add_options(parser: argparse.ArgumentParser, cls: type, *names: str, flags: Mapping[str, str] = {},
                extra_choices: Mapping[str, Sequence[Any]] = {}) -> None:
    """One option per field of ``cls`` (only ``names`` when given), in field order; ``flags`` maps a field to the
    option name it had before options were derived (``rate_hz`` -> ``--rate``), so command lines keep working;
    ``extra_choices`` adds values a field's option accepts beyond the field's own (the command handles those)."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for field in dataclasses.fields(cls):
        if names and field.name not in names:
            continue
        factory = field.default_factory
        default = field.default if factory is dataclasses.MISSING else factory()
        options = _type_options(hints[field.name], default)
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if field.name in extra_choices:
            options["choices"] = (*options["choices"], *extra_choices[field.name])
        comment = comments.get(field.name)  # argparse expands %-formats in help: a literal "%" must be doubled
        parser.add_argument(flags.get(field.name, "--" + field.name.replace("_", "-")), dest=field.name,
                            default=default, required=default is dataclasses.MISSING,
                            help=comment.replace("%", "%%") if comment else None, **options)


def from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` from the parsed options named like its fields (those :func:`add_options` added); ``values`` set
    the others (or override)."""
    parsed = vars(args)
    given = {f.name: parsed[f.name] for f in dataclasses.fields(cls) if f.name in parsed}  # type: ignore[arg-type]
    return cls(**given | values)


def _type_options(hint: Any, default: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: the option is X, its default None
        (hint,) = [a for a in args if a is not type(None)]
        return _type_options(hint, default)
    if origin is typing.Literal:
        return {"type": type(args[0]), "choices": args}
    if hint is bool:  # off by default: an on-switch; on by default: --x / --no-x
        return {"action": "store_true" if default is False else argparse.BooleanOptionalAction}
    if origin is list:
        return {"type": args[0], "nargs": "+"}
    return {"type": hint}


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment ending its line in ``cls``'s source (what a reader of the config sees too)."""
    first_name: dict[int, str] = {}  # line -> the first name on it
    comments = {}
    source = io.StringIO(textwrap.dedent(inspect.getsource(cls)))
    for token in tokenize.generate_tokens(source.readline):
        if token.type == tokenize.NAME:
            first_name.setdefault(token.start[0], token.string)
        elif token.type == tokenize.COMMENT and token.start[0] in first_name:
            comments[first_name[token.start[0]]] = token.string.lstrip("#").strip()
    return comments
