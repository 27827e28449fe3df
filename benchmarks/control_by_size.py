"""Control by sprite size: from kept control results, how far along their paths sprites go, by their size.

Reads the ``cases.jsonl`` of one or more ``control.py`` result folders (nothing is generated) and, for
each row asked for, gives per band of sprite size (px across) the moving sprites' mean ``progress`` (the
share of the target displacement travelled: :func:`sgi2v.sprites.track.progress_along`) and the mean
ObjMC of every controlled sprite, with the plain row's beside it when that row is there. Writes JSON.

    python benchmarks/control_by_size.py benchmarks/results/control --rows "plain;sgi2v"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BANDS = ((16, 24), (24, 32), (32, 41), (41, 65))  # px across; the world draws 16-40 (the last: larger worlds)


def by_size(results: list[dict], cases: dict) -> dict:
    """{band: {"sprites", "moving", "progress", "objmc_px"}} for one row's results (with ``progress`` filled in)."""
    out = {}
    for lo, hi in BANDS:
        progress, objmc, count = [], [], 0
        for r in results:
            case = cases[r["case"]]
            for n, s in enumerate(r["sprites"]):
                size = float(case.scene.sizes[case.sprites[n]])
                if not lo <= size < hi:
                    continue
                count += 1
                if math.isfinite(s["objmc_px"]):
                    objmc.append(s["objmc_px"])
                if math.isfinite(s["progress"]):
                    progress.append(s["progress"])
        out[f"{lo}-{hi - 1} px"] = {"sprites": count, "moving": len(progress),
                                    "progress": float(np.mean(progress)) if progress else float("nan"),
                                    "objmc_px": float(np.mean(objmc)) if objmc else float("nan")}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="control.py result folders (their cases.jsonl are read together)")
    parser.add_argument("--rows", default="plain;sgi2v", help="rows joined by ';' (default plain;sgi2v)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    from sgi2v.sprites.control import make_cases, update_kept

    rows = args.rows.split(";")
    sys.path.insert(0, str(HERE))
    import control

    kept: dict[str, list[dict]] = {row: [] for row in rows}
    for folder in args.folders:
        path = Path(folder) / "cases.jsonl"
        if not path.exists():
            parser.error(f"{path}: no such file (a control.py result folder has one)")
        for (row, _), r in control.load_kept(Path(folder)).items():
            if row in kept:
                kept[row].append(r)
    empty = [row for row, rs in kept.items() if not rs]
    if empty:
        parser.error(f"--rows: no results for {empty} in {args.folders}")
    worlds = {json.dumps(json.loads((Path(f) / "control.json").read_text()).get("sprite_sizes"))
              if (Path(f) / "control.json").exists() else "null" for f in args.folders}
    if len(worlds) > 1:
        parser.error(f"the folders' cases come from worlds of different sprite sizes: {sorted(worlds)}")
    sizes = json.loads(worlds.pop())
    cases = {c.index: c for c in make_cases(1 + max(r["case"] for rs in kept.values() for r in rs),
                                            sprite_sizes=tuple(sizes) if sizes else None)}
    for rs in kept.values():
        update_kept(rs, cases)
    report = {"folders": args.folders, "rows": {row: by_size(rs, cases) for row, rs in kept.items()}}
    print("| row | " + " | ".join(f"{band}: sprites, progress, ObjMC px" for band in report["rows"][rows[0]]) + " |")
    print("| --- |" + " --- |" * len(BANDS))
    for row, bands in report["rows"].items():
        cells = [f"{b['sprites']}, {b['progress']:.2f}, {b['objmc_px']:.2f}" for b in bands.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
