"""Show braids: as JSON spans (for programs), as wrapped text (for people) and as a picture (PNG).

All three views read one description of each span (:class:`Piece`), so they always agree:

- speech spans show their seconds in the audio and the adapter frames ``[first, last)`` the single
  time <-> frame rule (:mod:`speechbraid.braid.frames`) gives them;
- text spans show their surface text and token ids; the LLM's own BOS/EOS, which layouts place as ids
  without text, are shown by the tokenizer's name for them (``<s>``, ``</s>``);
- special tokens show their name (``<|il|>``, ``<|N|>``, ...) and, with a tokenizer, the id the vocab
  layout gives them;
- every span says whether it carries loss.

Text drawing: ``[A 0.10-0.40s f1:5]`` is speech from 0.10 to 0.40 s, filled with adapter frames 1..4
(a half-open range, as Python slices); loss-carrying text is underlined with ``^`` on the next line,
or bold + underlined when colours are on (a terminal). A legend line says so.

Picture: one horizontal strip per braid; the x axis is the LLM position, so a speech box is as wide as
its frame count, a text box as its token count and a special token one position. Loss spans are hatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from speechbraid.braid.frames import frame_range, num_frames_for
from speechbraid.braid.spans import Braid, SpecialSpan, SpeechSpan, TextSpan, UnitSpan
from speechbraid.braid.vocab import VocabLayout
from speechbraid.extras import require
from speechbraid.layouts.tokenizer import TextTokenizer

DEFAULT_FRAME_RATE = 12.5  # Hz: 80 ms adapter frames (METHODS.md section 1)

PieceKind = Literal["speech", "text", "special", "units"]


class NullTokenizer:
    """Stands in for the LLM tokenizer when none is at hand (``--tokenizer none``).

    Layouts still place BOS and EOS (shown as ``<bos>``/``<eos>``) but text gets no ids, so braids
    built with it are for display only: token counts and positions are unknown.
    """

    bos_id = -1
    eos_id = -2

    def encode(self, text: str) -> list[int]:
        return []

    def decode(self, ids: list[int]) -> str:
        return ""


@dataclass(frozen=True)
class BraidView:
    """What displaying a braid needs besides the braid: the tokenizer it was built with and the frame rate."""

    tokenizer: TextTokenizer
    frame_rate: float = DEFAULT_FRAME_RATE
    names: dict[int, str] = field(default_factory=dict)  # LLM BOS/EOS ids -> printable names
    vocab: VocabLayout | None = None  # where special tokens land; None without a real tokenizer

    @classmethod
    def for_tokenizer(cls, tokenizer: TextTokenizer, frame_rate: float = DEFAULT_FRAME_RATE) -> BraidView:
        if frame_rate <= 0:
            raise ValueError(f"frame rate must be > 0, got {frame_rate}")
        if isinstance(tokenizer, NullTokenizer):
            return cls(tokenizer, frame_rate, {NullTokenizer.bos_id: "<bos>", NullTokenizer.eos_id: "<eos>"})
        hf = getattr(tokenizer, "hf", None)
        names = {}
        for token_id in (tokenizer.bos_id, tokenizer.eos_id):
            name = hf.convert_ids_to_tokens(token_id) if hf is not None else None
            names[token_id] = name or f"<{token_id}>"
        vocab = VocabLayout(text_size=len(tokenizer)) if hasattr(tokenizer, "__len__") else None
        return cls(tokenizer, frame_rate, names, vocab)

    @property
    def has_ids(self) -> bool:
        return not isinstance(self.tokenizer, NullTokenizer)


@dataclass(frozen=True)
class Piece:
    """One span as every view shows it."""

    kind: PieceKind
    label: str  # what a person reads in the text drawing
    loss: bool
    positions: int | None  # LLM positions the span fills; None for text without a tokenizer
    json: dict[str, Any]
    lines: tuple[str, ...] = ()  # the label for the picture, one entry per line


def describe(braid: Braid, view: BraidView) -> list[Piece]:
    """The braid's spans as :class:`Piece` objects, in order."""
    num_frames = num_frames_for(braid.duration, view.frame_rate) if braid.duration else None
    pieces = []
    for span in braid.spans:
        if isinstance(span, SpeechSpan):
            first, last = frame_range(span.start, span.end, view.frame_rate, num_frames)
            times = f"{span.start:.2f}-{span.end:.2f}s"
            pieces.append(Piece(
                "speech", f"[A {times} f{first}:{last}]", False, last - first,
                {"modality": "speech", "start": round(span.start, 4), "end": round(span.end, 4),
                 "frames": [first, last], "loss": False},
                (times, f"f{first}:{last}")))
        elif isinstance(span, TextSpan):
            pieces.append(_text_piece(span, view))
        elif isinstance(span, SpecialSpan):
            out: dict[str, Any] = {"modality": "special", "token": span.token}
            if view.vocab is not None:
                out["id"] = view.vocab.special_id(span.token)
            out["loss"] = span.loss
            pieces.append(Piece("special", span.token, span.loss, 1, out, (span.token,)))
        elif isinstance(span, UnitSpan):
            pieces.append(Piece("units", f"[U {len(span.units)} units]", span.loss, len(span.units),
                                {"modality": "units", "units": list(span.units), "loss": span.loss},
                                (f"U x{len(span.units)}",)))
        else:  # ParallelSpan: text and speech streams, one position per step
            steps = len(span.text)
            pieces.append(Piece("units", f"[P {steps} steps text|speech]", span.loss, steps,
                                {"modality": "parallel", "text": list(span.text), "speech": list(span.speech),
                                 "loss": span.loss}, (f"P x{steps}",)))
    return pieces


def _text_piece(span: TextSpan, view: BraidView) -> Piece:
    out: dict[str, Any] = {"modality": "text", "text": span.text}
    if view.has_ids:
        out["tokens"] = list(span.tokens)
    if span.text is None:
        # Layouts put the LLM's BOS (or other bare ids) in a span of its own without surface text.
        label = "".join(view.names.get(t, view.tokenizer.decode([t])) for t in span.tokens)
        out["token"] = label
    else:
        label = span.text
        tokens = span.tokens
        # The layout appended EOS when the span holds one token more than its text encodes to.
        if tokens and tokens[-1] == view.tokenizer.eos_id and len(tokens) == len(view.tokenizer.encode(span.text)) + 1:
            out["eos"] = view.names[view.tokenizer.eos_id]
            label += out["eos"]
    out["loss"] = span.loss
    return Piece("text", label, span.loss, len(span.tokens) if view.has_ids else None, out, (label.strip(),))


@dataclass(frozen=True)
class BraidSummary:
    positions: int | None
    speech_frames: int
    text_tokens: int | None
    loss_tokens: int | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        if self.positions is None:
            return f"{self.speech_frames} speech frames, text tokens unknown (no tokenizer)"
        return (f"{self.positions} positions: {self.speech_frames} speech frames, {self.text_tokens} text tokens "
                f"({self.loss_tokens} with loss), {self.positions - self.speech_frames - self.text_tokens} special")


def summarize(pieces: Sequence[Piece]) -> BraidSummary:
    """Position counts of one braid (the same counts ``flatten_braid`` lays out)."""
    frames = sum(p.positions or 0 for p in pieces if p.kind == "speech")
    if any(p.positions is None for p in pieces):
        return BraidSummary(None, frames, None, None)
    text = sum(p.positions or 0 for p in pieces if p.kind in ("text", "units"))
    loss = sum(p.positions or 0 for p in pieces if p.loss)
    return BraidSummary(sum(p.positions or 0 for p in pieces), frames, text, loss)


def braid_json(braid: Braid, view: BraidView) -> dict[str, Any]:
    """The printable form of ``speechbraid layout --json``: layout, position counts and the spans."""
    pieces = describe(braid, view)
    return {"layout": braid.layout, **summarize(pieces).to_json(), "spans": [p.json for p in pieces]}


# ---- text drawing -------------------------------------------------------------------------------------

_ANSI = {"speech": "\033[36m", "special": "\033[35m", "loss": "\033[1;4m", "text": "\033[2m", "units": "\033[33m",
         "header": "\033[1m"}
_RESET = "\033[0m"


def legend(view: BraidView, color: bool) -> str:
    loss = "bold underlined text" if color else "text marked ^^^ below"
    colors = " (speech cyan, special tokens magenta, text without loss dim)" if color else ""
    ids = "" if view.has_ids else "; no tokenizer: text without token ids"
    return (f"legend: [A s-es fi:j] speech from s to e seconds of the audio = adapter frames i..j-1 at "
            f"{view.frame_rate:g} Hz; <|..|> special token; {loss} carries loss (a target), other text and "
            f"all speech/special positions do not{colors}{ids}")


def _style(piece: Piece) -> str:
    return "loss" if piece.loss else piece.kind


def format_braid(braid: Braid, view: BraidView, width: int = 100, color: bool = False, indent: str = "    ") -> str:
    """The braid's sequence on wrapped lines (see the module docstring for the marks)."""
    # Words of the sequence: (text, style, style of the space before it); the space between spans is
    # unstyled, the spaces inside a span belong to it (so a loss span is underlined as one stretch).
    words: list[tuple[str, str, str | None]] = []
    for piece in describe(braid, view):
        style = _style(piece)
        parts = piece.label.split() if piece.kind == "text" else [piece.label]
        for i, part in enumerate(parts or [""]):
            words.append((part, style, style if i else None))
    lines: list[list[tuple[str, str, str | None]]] = [[]]
    used = len(indent)
    for word in words:
        need = len(word[0]) + (1 if lines[-1] else 0)
        if lines[-1] and used + need > width:
            lines.append([])
            used, need = len(indent), len(word[0])
        lines[-1].append(word)
        used += need
    return "\n".join(_draw_line(line, color, indent) for line in lines)


def _draw_line(words: Sequence[tuple[str, str, str | None]], color: bool, indent: str) -> str:
    runs: list[tuple[str, str | None]] = [(indent, None)]  # (characters, style) in order
    for i, (word, style, space_style) in enumerate(words):
        if i:
            runs.append((" ", space_style))
        runs.append((word, style))
    if color:
        merged: list[tuple[str, str | None]] = []
        for chars, style in runs:  # one escape sequence per stretch of one style
            if merged and merged[-1][1] == style:
                merged[-1] = (merged[-1][0] + chars, style)
            else:
                merged.append((chars, style))
        return "".join(_paint(chars, style) if style else chars for chars, style in merged)
    drawn = "".join(chars for chars, _ in runs)
    marker = "".join(("^" if style == "loss" else " ") * len(chars) for chars, style in runs).rstrip()
    return f"{drawn}\n{marker}" if marker else drawn


def _paint(text: str, style: str) -> str:
    return f"{_ANSI[style]}{text}{_RESET}"


def format_utterance(header: str, braids: Sequence[Braid], view: BraidView, width: int = 100,
                     color: bool = False) -> str:
    """One block: the utterance header, then per braid its layout, counts and sequence."""
    out = [_paint(header, "header") if color else header]
    for braid in braids:
        out.append(f"  {braid.layout}  ({summarize(describe(braid, view)).describe()})")
        out.append(format_braid(braid, view, width, color))
    return "\n".join(out)


# ---- picture ------------------------------------------------------------------------------------------

_COLORS = {"speech": "#8ecae6", "text": "#d9d9d9", "loss": "#ffd166", "special": "#cdb4db", "units": "#95d5b2"}
_MAX_FIG_WIDTH = 40.0  # inches; beyond that a PNG becomes unwieldy, boxes just get narrower
_POSITION_INCHES = 0.24  # preferred width of one LLM position: a one-token box still takes a vertical label
_ROW_INCHES = 0.95
_TITLE_INCHES = 2.6  # room left of the strips for "id / layout"
_FONT = 7.0
_CHAR_INCHES = _FONT * 0.6 / 72  # average glyph width of the label font


def plot_braids(rows: Sequence[tuple[str, Braid]], view: BraidView, path: str | Path, dpi: int = 110) -> Path:
    """Draw each ``(title, braid)`` as a strip of boxes and save a PNG (matplotlib, Agg backend)."""
    matplotlib = require("matplotlib", "units", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    if not rows:
        raise ValueError("nothing to plot")
    described = [(title, describe(braid, view)) for title, braid in rows]
    # Without a tokenizer a text box is one unit per word (plus its EOS), an honest stand-in for its length.
    widths = [[p.positions if p.positions is not None else max(1, len(p.label.split())) for p in pieces]
              for _, pieces in described]
    longest = max(sum(w) for w in widths)
    fig_w = min(_MAX_FIG_WIDTH, max(8.0, _TITLE_INCHES + 0.3 + longest * _POSITION_INCHES))
    fig_h = 1.0 + _ROW_INCHES * len(rows)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=dpi)
    fig.subplots_adjust(left=_TITLE_INCHES / fig_w, right=1 - 0.15 / fig_w, top=1 - 0.45 / fig_h,
                        bottom=0.5 / fig_h)
    inches_per_position = (fig_w - _TITLE_INCHES - 0.15) / longest
    box_height = 0.76
    for row, ((title, pieces), row_widths) in enumerate(zip(described, widths, strict=True)):
        y = len(rows) - 1 - row
        x = 0.0
        for piece, w in zip(pieces, row_widths, strict=True):
            ax.add_patch(Rectangle((x, y + (1 - box_height) / 2), w, box_height, facecolor=_COLORS[_style(piece)],
                                   edgecolor="#c1121f" if piece.loss else "#555555",
                                   linewidth=1.6 if piece.loss else 0.6, hatch="//" if piece.loss else None))
            _box_label(ax, piece, x + w / 2, y + 0.5, w * inches_per_position,
                       box_height * (fig_h - 0.95) / len(rows))
            x += w
        ax.text(-0.15 / inches_per_position, y + 0.5, title, ha="right", va="center", fontsize=8,
                family="monospace")
    ax.set_xlim(0, longest + 0.3)  # room for the last box's outline
    ax.set_ylim(0, len(rows))
    ax.set_yticks([])
    unit = "LLM positions" if view.has_ids else "LLM positions (text ~ one per word: no tokenizer)"
    ax.set_xlabel(f"{unit}; speech boxes = adapter frames at {view.frame_rate:g} Hz", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles = [Patch(facecolor=_COLORS["speech"], edgecolor="#555555", label="speech (input)"),
               Patch(facecolor=_COLORS["loss"], edgecolor="#c1121f", hatch="//", label="text with loss (target)"),
               Patch(facecolor=_COLORS["text"], edgecolor="#555555", label="text without loss"),
               Patch(facecolor=_COLORS["special"], edgecolor="#555555", label="special token")]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _box_label(ax: Any, piece: Piece, x: float, y: float, width_in: float, height_in: float) -> None:
    """Label inside the box: across when it fits, else upright along the box, shortened with … if need be.

    Labels sit on a white backing so hatching does not hide them."""
    across = max(len(line) for line in piece.lines) * _CHAR_INCHES
    if across <= width_in - _CHAR_INCHES or width_in >= height_in:
        fit, rotation, lines = int(width_in / _CHAR_INCHES) - 1, 0, piece.lines
    else:
        fit, rotation, lines = int(height_in / _CHAR_INCHES) - 1, 90, (" ".join(piece.lines),)
    fit = max(1, fit)
    text = "\n".join(line if len(line) <= fit else line[: max(1, fit - 1)] + "…" for line in lines)
    ax.text(x, y, text, ha="center", va="center", rotation=rotation, fontsize=_FONT, linespacing=1.1,
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.6} if piece.loss else None)
