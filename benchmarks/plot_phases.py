"""Draw time per phase (encode, denoise, optimise, decode) of benchmark JSON files as stacked bars (PNG).

  python benchmarks/plot_phases.py benchmarks/results/*.json -o benchmarks/phases.png
"""

from __future__ import annotations

import argparse
import json
import sys

from PIL import Image, ImageDraw

COLORS = {"encode": (90, 160, 230), "denoise": (120, 200, 120), "optimize": (240, 140, 60), "decode": (180, 120, 220)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    rows = []
    for path in args.results:
        with open(path) as fh:
            data = json.load(fh)
        s = data["settings"]
        for variant, r in data["variants"].items():
            rows.append((f"{data['mode']} {s['width']}x{s['height']} {s['frames']}f {s['steps']} steps: {variant}", r["phases_s"]))
    width, bar_h, left = 1100, 26, 430
    height = 40 + len(rows) * (bar_h + 14) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), "time per phase, seconds (each mode scaled to its own longest run)", fill="black")
    modes = {}
    for label, phases in rows:
        mode = label.split(":")[0]
        modes[mode] = max(modes.get(mode, 0.0), sum(phases.values()))
    y = 40
    for label, phases in rows:
        scale = (width - left - 90) / modes[label.split(":")[0]]
        draw.text((10, y + 7), label, fill="black")
        x = left
        for name in ("encode", "denoise", "optimize", "decode"):
            w = phases[name] * scale
            draw.rectangle([x, y, x + w, y + bar_h], fill=COLORS[name])
            x += w
        draw.text((x + 6, y + 7), f"{sum(phases.values()):.1f} s", fill="black")
        y += bar_h + 14
    x = left
    for name, color in COLORS.items():
        draw.rectangle([x, y + 6, x + 14, y + 20], fill=color)
        draw.text((x + 20, y + 7), name, fill="black")
        x += 110
    image.save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
