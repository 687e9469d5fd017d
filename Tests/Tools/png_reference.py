#!/usr/bin/env python3
"""An independent reference decode of PNG files, for the PngSuite test.

Decodes each file with pypng (pure Python: its own inflate framing, unfiltering and Adam7) and
converts the pixels the way imagegen's ingest promises: 8-bit RGBA, palette and tRNS to alpha,
gray to RGB, 16-bit samples scaled to 8 bits with rounding; gAMA, cHRM and sBIT are ignored.
Writes OUT/<name>.rgba (raw RGBA bytes) and OUT/<name>.json ({"width", "height"}).

    png_reference.py OUT FILE...
"""
import json
import os
import sys

import png


def scale_to_8(value, bitdepth):
    if bitdepth == 16:
        return (value * 255 + 32895) >> 16
    if bitdepth == 8:
        return value
    return value * 255 // ((1 << bitdepth) - 1)


def decode(path):
    width, height, rows, info = png.Reader(filename=path).read()
    rows = [list(row) for row in rows]
    bitdepth = info["bitdepth"]
    planes = info["planes"]
    palette = info.get("palette") if planes == 1 and not info["greyscale"] else None
    transparent = info.get("transparent")
    pixels = []
    for row in rows:
        for x in range(width):
            if palette is not None:
                entry = palette[row[x]]
                r, g, b = entry[:3]
                a = entry[3] if len(entry) == 4 else 255
                pixels.append([r, g, b, a])
                continue
            sample = row[x * planes : (x + 1) * planes]
            if planes == 1:
                v = sample[0]
                a = 0 if transparent is not None and v == transparent[0] else None
                gray = scale_to_8(v, bitdepth)
                pixels.append([gray, gray, gray, 255 if a is None else a])
            elif planes == 2:
                gray = scale_to_8(sample[0], bitdepth)
                pixels.append([gray, gray, gray, scale_to_8(sample[1], bitdepth)])
            elif planes == 3:
                a = 0 if transparent is not None and tuple(sample) == tuple(transparent) else 255
                pixels.append([scale_to_8(v, bitdepth) for v in sample] + [a])
            else:
                pixels.append([scale_to_8(v, bitdepth) for v in sample])
    return width, height, bytes(v for p in pixels for v in p)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for path in sys.argv[2:]:
        name = os.path.basename(path)
        width, height, data = decode(path)
        with open(os.path.join(out, name + ".rgba"), "wb") as f:
            f.write(data)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"width": width, "height": height}, f)


if __name__ == "__main__":
    main()
