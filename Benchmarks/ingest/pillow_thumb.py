#!/usr/bin/env python3
"""Pillow side of the ingest benchmark: fit IN inside 1024x1024 and save OUT as PNG.

    pillow_thumb.py IN OUT

JPEG uses draft() (libjpeg DCT shrink-on-load), then thumbnail() with Lanczos, then
PNG with optimize=False, compress_level=6.
"""

import sys

from PIL import Image

BOX = (1024, 1024)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with Image.open(src) as im:
        if im.format == "JPEG":
            im.draft("RGB", BOX)
        im.thumbnail(BOX, Image.LANCZOS)
        im.save(dst, "PNG", optimize=False, compress_level=6)


if __name__ == "__main__":
    main()
