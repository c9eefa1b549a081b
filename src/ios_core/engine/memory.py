"""One arena for the whole network: buffers that are never live at once share bytes.

The plan is static, made once when the program is built: each buffer has a size and a stage
interval ``[first, last]``; buffers are placed largest first at the lowest aligned offset that
overlaps no placed buffer whose interval meets theirs (the greedy-by-size heuristic of TFLite's
and MNN's arena planners). Lifetimes are whole stages because the groups of a stage run
concurrently: a buffer last read in stage ``s`` is free for stage ``s + 1``, never before.
"""

from __future__ import annotations

from collections.abc import Sequence


def align(n: int, alignment: int) -> int:
    """``n`` rounded up to a multiple of ``alignment``."""
    return -(-n // alignment) * alignment


def assign_offsets(
    sizes: Sequence[int], lifetimes: Sequence[tuple[int, int]], alignment: int = 256
) -> tuple[list[int], int]:
    """Byte offsets for buffers of ``sizes`` bytes live in stage intervals ``lifetimes``, and the arena's size.

    Parameters
    ----------
    sizes
        Bytes of each buffer.
    lifetimes
        ``(first, last)`` stage of each buffer, inclusive.
    alignment
        Every offset is a multiple of it.

    Returns
    -------
    offsets, arena_bytes
        Two buffers whose intervals meet never overlap; ``arena_bytes`` is the peak.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], lifetimes[i][0], i))
    offsets = [0] * len(sizes)
    placed: list[int] = []
    arena = 0
    for i in order:
        first, last = lifetimes[i]
        busy = sorted(
            (offsets[j], offsets[j] + sizes[j]) for j in placed if lifetimes[j][0] <= last and first <= lifetimes[j][1]
        )
        offset = 0
        for lo, hi in busy:
            if lo - offset >= sizes[i]:
                break
            offset = max(offset, align(hi, alignment))
        offsets[i] = offset
        placed.append(i)
        arena = max(arena, offset + sizes[i])
    return offsets, align(arena, alignment)
