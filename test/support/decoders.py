"""
Decoders written here from the formats' specs, to check the node's encoders (not their inverse).

compressedDepth: the 12-byte ConfigHeader read with struct as compressed_depth_image_transport's
C struct lays it out, the PNG decoded by Pillow (the encoder uses OpenCV), depth = A / (q - B)
as its subscriber computes it.
"""
import io
import struct

import numpy as np
from PIL import Image as PILImage


def decode_compressed_depth(fmt: str, data: bytes):
    """compressed_depth_image_transport's subscriber, from its source's description."""
    encoding, _, rest = fmt.partition(';')
    assert rest.strip() in ('compressedDepth png', 'compressedDepth')
    kind, a, b = struct.unpack('<iff', data[:12])   # enum (int), float depthParam[2]
    assert kind == 0                                 # INV_DEPTH
    png = PILImage.open(io.BytesIO(data[12:]))
    assert png.format == 'PNG'
    q = np.array(png, dtype=np.uint16)
    if encoding == '16UC1':
        return q, a, b
    with np.errstate(divide='ignore'):
        depth = np.where(q != 0, np.float32(a) / (q.astype(np.float32) - np.float32(b)),
                         np.float32('nan'))
    return depth.astype(np.float32), a, b
