"""A PNG's real size, from its chunks walked in order, before a pixel is decoded.

    width, height = png_size(handle, "drawing")     # None when the data is not a PNG at all

Reading bytes 16-24 trusts whatever chunk comes first: a PNG whose first chunk is a fake
280x280 IHDR followed by the real 8900x8900 one passes such a check and is decoded in
full (gigabytes). The PNG specification (section 5.6) requires IHDR to be the first chunk
and to appear once; a file that breaks either rule is refused here, so the size checked is
the size a decoder uses.
"""

from __future__ import annotations

from typing import BinaryIO

from mnist_dnn.core.errors import UserInputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_LENGTH = 13  # width, height (4 bytes each), depth, colour type, compression, filter, interlace
_MAX_CHUNK = 2**31 - 1  # the specification's limit on a chunk's length field
_PIXELS_START = (b"IDAT", b"IEND")  # header chunks end here: nothing after can change the size


def png_size(stream: BinaryIO, where: str) -> tuple[int, int] | None:
    """(width, height) from the one IHDR of a PNG stream; None if it does not start with the PNG signature.

    Reads from the stream's start, walking the chunk headers up to the first IDAT (seeking
    past chunk data, so a large ancillary chunk is not read), then puts the stream back
    where it was.
    """
    start = stream.tell()
    stream.seek(0)
    try:
        if stream.read(len(SIGNATURE)) != SIGNATURE:
            return None
        size = None
        while True:
            header = stream.read(8)
            if len(header) < 8:
                raise UserInputError(f"{where}: a PNG cut short before its image data")
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if length > _MAX_CHUNK:
                raise UserInputError(f"{where}: a PNG chunk declares {length:,} bytes, past the PNG limit")
            if size is None and kind != b"IHDR":
                raise UserInputError(f"{where}: not a valid PNG (its first chunk is {kind!r}, not IHDR)")
            if kind == b"IHDR":
                if size is not None:
                    raise UserInputError(f"{where}: not a valid PNG (it has more than one IHDR chunk)")
                data = stream.read(length)
                if length != _IHDR_LENGTH or len(data) != _IHDR_LENGTH:
                    raise UserInputError(f"{where}: not a valid PNG (its IHDR chunk is {length} bytes, not 13)")
                size = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
                stream.seek(4, 1)  # the chunk's CRC
                continue
            if kind in _PIXELS_START:
                return size
            stream.seek(length + 4, 1)
    finally:
        stream.seek(start)
