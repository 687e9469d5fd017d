#!/usr/bin/env python3
"""Generates the two deterministic reference images for the ingest peer benchmark.

    make_images.py OUTDIR

writes OUTDIR/photo-12mp.jpg (4000x3000 RGB, JPEG quality 90) and OUTDIR/rgba-4096.png
(4096x4096 RGBA, soft alpha gradient). Content is photo-like: smooth multi-octave gradients,
hard-edged shapes and sensor-like noise, so neither file is trivially compressible. The output
is byte-identical for a given numpy/Pillow version (fixed seeds).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def smooth_field(rng, width, height, octaves=((6, 1.0), (24, 0.5), (96, 0.25), (384, 0.12))):
    """Sum of upsampled random grids (value noise) in [0, 1], shape (height, width)."""
    total = np.zeros((height, width), dtype=np.float32)
    weight = 0.0
    for cells, amp in octaves:
        gw = max(2, cells)
        gh = max(2, int(round(cells * height / width)))
        grid = rng.random((gh, gw), dtype=np.float32)
        img = Image.fromarray((grid * 255).astype(np.uint8), mode="L")
        up = np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0
        total += amp * up
        weight += amp
    return total / weight


def photo_like(seed, width, height):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Sky-to-ground style vertical gradient plus a warm horizontal tint.
    base = np.stack(
        [
            0.35 + 0.45 * (yy / height) + 0.10 * (xx / width),
            0.45 + 0.25 * (yy / height),
            0.80 - 0.50 * (yy / height),
        ],
        axis=-1,
    )
    # Independent low-frequency texture per channel, plus shared luminance texture.
    lum = smooth_field(rng, width, height)
    for c in range(3):
        base[..., c] += 0.25 * (smooth_field(rng, width, height) - 0.5) + 0.35 * (lum - 0.5)
    # Periodic structure (like fabric or foliage) with slowly varying phase.
    phase = smooth_field(rng, width, height, ((8, 1.0),)) * 12.0
    base += 0.06 * np.sin(xx / 7.0 + phase)[..., None] * np.cos(yy / 11.0 - phase)[..., None]
    img = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), mode="RGB")

    # Hard-edged objects, slightly blurred like a lens would.
    draw = ImageDraw.Draw(img)
    for _ in range(60):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 40, width // 6)), int(rng.integers(height // 40, height // 6))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    for _ in range(40):
        pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(2, 12)))
    img = img.filter(ImageFilter.GaussianBlur(1.2))

    # Sensor-like noise.
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0.0, 4.0, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_images.py OUTDIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)

    jpg = out / "photo-12mp.jpg"
    if not jpg.exists():
        Image.fromarray(photo_like(12, 4000, 3000), mode="RGB").save(jpg, "JPEG", quality=90)

    png = out / "rgba-4096.png"
    if not png.exists():
        n = 4096
        rgb = photo_like(4096, n, n)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        r = np.sqrt((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (n / 2)
        alpha = np.clip(1.15 - 0.9 * r, 0.0, 1.0) * 255.0  # soft radial fade towards the corners
        rgba = np.dstack([rgb, alpha.astype(np.uint8)])
        Image.fromarray(rgba, mode="RGBA").save(png, "PNG")

    for p in (jpg, png):
        with Image.open(p) as im:
            print(f"{p}: {im.format} {im.size[0]}x{im.size[1]} {im.mode}, {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
