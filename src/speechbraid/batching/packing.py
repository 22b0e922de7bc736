"""Pack examples into fixed-length rows (first-fit decreasing), so little of each row is padding."""

from __future__ import annotations

from collections.abc import Sequence

from speechbraid.batching.collate import FlatBraid


def pack_rows(examples: Sequence[FlatBraid], max_len: int) -> list[list[FlatBraid]]:
    """Group examples into rows of at most ``max_len`` positions.

    First-fit decreasing: longest first, each into the first row with room. An example longer than a
    row is an error (it would be silently truncated otherwise).
    """
    rows: list[list[FlatBraid]] = []
    room: list[int] = []
    for flat in sorted(examples, key=len, reverse=True):
        if len(flat) > max_len:
            raise ValueError(f"example {flat.id!r} has {len(flat)} positions, more than the context of {max_len}")
        for i, free in enumerate(room):
            if len(flat) <= free:
                rows[i].append(flat)
                room[i] -= len(flat)
                break
        else:
            rows.append([flat])
            room.append(max_len - len(flat))
    return rows
