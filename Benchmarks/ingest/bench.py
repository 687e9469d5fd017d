#!/usr/bin/env python3
"""Times imagegen ingest, vipsthumbnail and Pillow on the reference images and prints a table.

    bench.py --imagegen BIN --images DIR --work DIR [--runs 7] [--fit 1024x1024] [--markdown]

Every run is a separate process wrapped in /usr/bin/time -v (wall time is measured here with
perf_counter around the whole process; peak RSS comes from time's "Maximum resident set size").
Each tool gets one untimed warm-up run per image, then the tools take turns run by run so drift
on the machine hits them alike. Reported: median wall time, the largest peak RSS over the timed
runs, and the size of the PNG written.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = [("photo-12mp.jpg", "12MP JPEG 4000x3000"), ("rgba-4096.png", "RGBA PNG 4096x4096")]


def tool_commands(args, src, outdir):
    """(name, argv, produced-png path) for each tool."""
    stem = src.stem
    w, h = args.fit.split("x")
    ig_dir = outdir / "imagegen"
    return [
        ("imagegen", [args.imagegen, "ingest", str(src), "--fit", args.fit, "--out", str(ig_dir)],
         ig_dir / f"{stem}.png"),
        ("vips", ["vipsthumbnail", str(src), "--size", f"{w}x{h}", "-o", str(outdir / f"vips-{stem}.png")],
         outdir / f"vips-{stem}.png"),
        ("pillow", [sys.executable, str(HERE / "pillow_thumb.py"), str(src), str(outdir / f"pillow-{stem}.png")],
         outdir / f"pillow-{stem}.png"),
    ]


def run_once(argv):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", Path(tf.name).read_text())
        return wall, int(m.group(1)) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imagegen", required=True)
    ap.add_argument("--images", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--fit", default="1024x1024")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()

    rows = []
    for filename, label in IMAGES:
        src = (args.images / filename).resolve()
        outdir = (args.work / src.stem).resolve()
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir(parents=True)
        tools = tool_commands(args, src, outdir)
        walls = {name: [] for name, _, _ in tools}
        rss = {name: 0.0 for name, _, _ in tools}
        for name, argv, _ in tools:  # warm-up: page cache, dynamic loader
            run_once(argv)
        for _ in range(args.runs):
            for name, argv, _ in tools:
                wall, peak = run_once(argv)
                walls[name].append(wall)
                rss[name] = max(rss[name], peak)
        result = {}
        for name, _, out in tools:
            with Image.open(out) as im:
                dims = f"{im.size[0]}x{im.size[1]} {im.mode}"
            result[name] = (statistics.median(walls[name]), rss[name], out.stat().st_size, dims)
        for name, _, _ in tools:
            med, peak, size, dims = result[name]
            rows.append([name, label, f"{med:.3f}", f"{med / result['vips'][0]:.2f}x", f"{peak:.0f}",
                         f"{size:,}", f"{size / result['pillow'][2]:.2f}", dims])

    header = ["tool", "image", "median s", "vs vips", "peak RSS MB", "output bytes", "size vs Pillow", "output"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"\n{args.runs} timed runs per cell (+1 warm-up), fit {args.fit}; {os.cpu_count()} CPUs; "
          f"wall time includes process start-up.")
    bomb_report(args)


def bomb_report(args):
    """A 50,000 x 50,000 RGBA PNG header of a few hundred bytes must be refused fast, before any
    pixel memory: the in-process time imagegen reports (`elapsed_ms`, sniff to verdict)."""
    import json
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 50000, 50000, 8, 6, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100000))
            + chunk(b"IEND", b""))
    path = Path(args.work) / "bomb-50000x50000.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bomb)
    times, code = [], None
    for _ in range(args.runs):
        done = subprocess.run([args.imagegen, "ingest", "--json", str(path)], capture_output=True, text=True)
        verdict = json.loads(done.stdout.strip().splitlines()[-1])
        times.append(verdict["elapsed_ms"])
        code = verdict.get("code")
    print(f"50,000 x 50,000 PNG bomb ({len(bomb)} bytes): refused as {code} in {statistics.median(times):.3f} ms "
          f"(median of {args.runs}, in-process, no pixel memory)")


if __name__ == "__main__":
    main()
