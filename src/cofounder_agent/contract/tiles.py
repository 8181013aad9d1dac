"""Overlapping tiles over a picture: the engine's tiler and the step counts of tiled stages share them."""

from __future__ import annotations

from collections.abc import Iterator


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``length``; the last tile is flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tiles(width: int, height: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """``(left, top, right, bottom)`` boxes of overlapping tiles covering the picture."""
    for top in _starts(height, tile, overlap):
        for left in _starts(width, tile, overlap):
            yield left, top, min(left + tile, width), min(top + tile, height)
