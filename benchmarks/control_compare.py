"""Compare control runs of different models on the same held-out cases, case by case.

Each folder is one finished (or partial) run of ``benchmarks/control.py`` (its ``cases.jsonl``). The first folder is
the reference. For each folder this prints the ratio of SG-I2V's mean ObjMC to plain SVD's with its 95 % interval
over the cases, and, against the reference, the paired per-case difference of each row's ObjMC: its mean with a 95 %
interval (the cases resampled) and its median size. Models trained by the same recipe with different seeds show
how much of a difference between two single training runs is the training's own randomness, which the interval of
one run's ratio does not contain.

    python benchmarks/control_compare.py benchmarks/results/control-schedule benchmarks/results/control-seed1
    python benchmarks/control_compare.py A B C --json spread.json

Only cases measured in every folder count. Kept results are measured again from their stored tracks with the
current measure (``update_kept``), as ``control.py`` does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import control  # noqa: E402  (the benchmark beside this script)


def paired_difference(a: list[float], b: list[float], resamples: int = control.BOOTSTRAP, seed: int = 0) -> dict:
    """Mean of ``b - a`` over the cases with its 95 % percentile interval (the cases drawn again with replacement,
    seeded), the median absolute difference, and the correlation of ``a`` and ``b`` over the cases (how far the
    two runs agree on which cases are hard)."""
    d = np.asarray(b, float) - np.asarray(a, float)
    if not len(d):
        return {"cases": 0, "mean": float("nan"), "low": float("nan"), "high": float("nan"),
                "median_abs": float("nan"), "correlation": float("nan")}
    draws = np.random.default_rng(seed).integers(0, len(d), (resamples, len(d)))
    low, high = np.percentile(d[draws].mean(1), [2.5, 97.5])
    return {"cases": int(len(d)), "mean": float(d.mean()), "low": float(low), "high": float(high),
            "median_abs": float(np.median(np.abs(d))),
            "correlation": float(np.corrcoef(a, b)[0, 1]) if len(d) > 2 and np.std(a) > 0 and np.std(b) > 0
            else float("nan")}


def compare(runs: dict[str, dict], rows: tuple[str, ...] = ("plain", "sgi2v")) -> dict:
    """``runs``: name -> kept results by (row, case), the reference first. Only cases with every row finite in every
    run count."""
    names = list(runs)
    cases = sorted(set.intersection(*({c for (r, c) in kept if r == rows[0]} for kept in runs.values())))
    cases = [c for c in cases if all((row, c) in kept and math.isfinite(kept[(row, c)]["objmc_px"])
                                     for kept in runs.values() for row in rows)]
    report = {"cases": cases, "runs": {}}
    reference = runs[names[0]]
    for name in names:
        kept = runs[name]
        entry = {row: float(np.mean([kept[(row, c)]["objmc_px"] for c in cases])) if cases else float("nan")
                 for row in rows}
        if "plain" in rows and "sgi2v" in rows:
            entry["ratio"] = control.ratio_interval([(kept[("plain", c)], kept[("sgi2v", c)]) for c in cases])
        if name != names[0]:
            entry["against_reference"] = {
                row: paired_difference([reference[(row, c)]["objmc_px"] for c in cases],
                                       [kept[(row, c)]["objmc_px"] for c in cases]) for row in rows}
        report["runs"][name] = entry
    ratios = [e["ratio"]["ratio"] for e in report["runs"].values() if "ratio" in e]
    if len(ratios) > 1:
        report["ratio_spread"] = {"runs": len(ratios), "mean": float(np.mean(ratios)),
                                  "sd": float(np.std(ratios, ddof=1)), "min": float(min(ratios)),
                                  "max": float(max(ratios))}
    return report


def text(report: dict, rows: tuple[str, ...] = ("plain", "sgi2v")) -> str:
    names = list(report["runs"])
    head = "| run | model | noise seed | " + " | ".join(f"{row} ObjMC px" for row in rows) + " | ratio (95 % interval) | " + \
        " | ".join(f"{row}: difference from {names[0]} px, mean (95 %) / median size / correlation" for row in rows) + " |"
    lines = [f"{len(report['cases'])} cases measured in every run.", "", head,
             "|" + " --- |" * (4 + 2 * len(rows))]
    for name, e in report["runs"].items():
        r = e.get("ratio")
        ratio = f"{r['ratio']:.2f}x ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})" if r else "–"
        diffs = [f"{d['mean']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f}) / {d['median_abs']:.2f} / "
                 f"{d['correlation']:.2f}"
                 for d in (e["against_reference"][row] for row in rows)] if "against_reference" in e else \
            ["reference"] * len(rows)
        lines.append(f"| {name} | {e.get('model') or '–'} | {e.get('noise_seed', '–')} | " + " | ".join(f"{e[row]:.2f}" for row in rows) + f" | {ratio} | " +
                     " | ".join(diffs) + " |")
    if "ratio_spread" in report:
        s = report["ratio_spread"]
        lines += ["", f"Ratio over the {s['runs']} runs: mean {s['mean']:.3f}x, standard deviation {s['sd']:.3f}, "
                      f"from {s['min']:.2f}x to {s['max']:.2f}x."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="result folders of control.py, the reference first")
    parser.add_argument("--cases", type=int, default=48, help="the held-out cases the runs used (default 48)")
    parser.add_argument("--json", default=None, help="also write the comparison to this JSON file")
    args = parser.parse_args(argv)
    if len(args.folders) < 2:
        parser.error("give at least two result folders")
    from sgi2v.sprites.control import CASES_FIRST_SEED, make_cases, update_kept

    runs, first_seeds, meta = {}, {}, {}
    for folder in args.folders:
        path = Path(folder)
        if not (path / "cases.jsonl").is_file():
            parser.error(f"{folder}: no cases.jsonl (not a result folder of control.py)")
        report = json.loads((path / "control.json").read_text()) if (path / "control.json").is_file() else {}
        if report.get("sprite_sizes"):
            parser.error(f"{folder}: its cases come from scenes with sprite sizes {report['sprite_sizes']}; only the "
                         "world's own are compared")
        first_seeds[folder] = report.get("first_seed", CASES_FIRST_SEED)
        meta[folder] = {"model": report.get("model"), "noise_seed": report.get("noise_seed", control.NOISE_SEED)}
    if len(set(first_seeds.values())) > 1:
        parser.error("the folders' cases come from different held-out seeds: " +
                     ", ".join(f"{f} {s:,}" for f, s in first_seeds.items()))
    cases = {c.index: c for c in make_cases(args.cases, first_seed=first_seeds[args.folders[0]])}
    for folder in args.folders:
        path = Path(folder)
        kept = control.load_kept(path)
        update_kept(list(kept.values()), cases)
        runs[path.name if path.name not in runs else str(path)] = kept
    report = compare(runs)
    for name, folder in zip(runs, args.folders):
        report["runs"][name].update(meta[folder])
    if not report["cases"]:
        parser.error("no case is measured in every folder")
    print(text(report), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
