"""The single time <-> frame rule: which adapter frames a speech span of ``[start, end)`` seconds covers.

Adapter frame ``i`` covers ``[i*T, (i+1)*T)`` with ``T = 1 / frame_rate`` (80 ms at 12.5 Hz).
Rule: both boundaries snap to the NEAREST frame boundary (half rounds up), so consecutive spans that
share a boundary share no frame and leave no gap - an utterance cut into words maps to a partition
of its frames. A span that snaps to zero frames (a word shorter than ~T/2 around a boundary, or any
word shorter than one frame) still gets one frame: the frame that contains its midpoint. Ranges are
clipped to the frames the encoder produced. Under CTC compression a span holds only the kept frames inside
its range - or, where none is kept, again the one frame that contains its midpoint.
"""

from __future__ import annotations

import math


def _snap(t: float, frame_rate: float) -> int:
    return math.floor(t * frame_rate + 0.5)


def frame_range(start: float, end: float, frame_rate: float, num_frames: int | None = None) -> tuple[int, int]:
    """Frame indices ``[first, last)`` of the span ``[start, end)`` seconds (see module docstring)."""
    if end < start:
        raise ValueError(f"speech span ends before it starts: [{start}, {end})")
    first, last = _snap(start, frame_rate), _snap(end, frame_rate)
    if last <= first:
        first = midpoint_frame(start, end, frame_rate)
        last = first + 1
    if num_frames is not None:
        if num_frames <= 0:
            raise ValueError("an utterance yields at least one frame")
        first = min(max(first, 0), num_frames - 1)
        last = min(max(last, first + 1), num_frames)
    return first, last


def midpoint_frame(start: float, end: float, frame_rate: float) -> int:
    """The frame that contains the span's midpoint: what a span keeps when nothing else falls to it."""
    return math.floor((start + end) / 2 * frame_rate)


def num_frames_for(duration: float, frame_rate: float) -> int:
    """Frames a whole utterance of ``duration`` seconds yields (at least one)."""
    return max(1, _snap(duration, frame_rate))
