"""A frame number drawn into the picture, readable back after H.264/MPEG-4 compression.

The top-left row of a frame holds ``GUARDS + BITS`` square blocks of ``block(width)`` px: a white block, a black
block, then the frame number modulo 2**16, most significant bit first (white = 1). The blocks are whole 16 px
macroblocks, so lossy codecs keep them readable. Pure Python (the RTSP server runs on the system ``python3``, which
has no NumPy); :func:`read` takes a NumPy image on the client side.
"""

from __future__ import annotations

BITS = 16
GUARDS = 2  # white, black: they calibrate the threshold and tell a coded frame from any other picture
WHITE, BLACK = 235, 16  # luma (video range)
MIN_WIDTH = 320


def block(width: int) -> int:
    """Side of one block for a frame ``width`` px wide: 16 px per 320 px of width (32 at 640)."""
    if width < MIN_WIDTH:
        raise ValueError(f"frame width {width}: the frame code needs at least {MIN_WIDTH} px")
    return 16 * (width // MIN_WIDTH)


def levels(number: int) -> list[int]:
    """The luma of each block, left to right, for frame ``number``."""
    n = number % (1 << BITS)
    return [WHITE, BLACK] + [WHITE if (n >> (BITS - 1 - i)) & 1 else BLACK for i in range(BITS)]


def read(image) -> int | None:
    """The frame number in ``image`` (a BGR or gray NumPy array), or None when it carries no frame code."""
    h, w = image.shape[:2]
    if w < MIN_WIDTH:
        return None
    b = block(w)
    if h < b:
        return None
    q = b // 4  # the middle half of each block: edges blur under compression and scaling
    means = [float(image[q:b - q, i * b + q:(i + 1) * b - q].mean()) for i in range(GUARDS + BITS)]
    white, black = means[0], means[1]
    if white - black < 100:
        return None
    mid = (white + black) / 2
    n = 0
    for m in means[GUARDS:]:
        n = (n << 1) | (m > mid)
    return n
