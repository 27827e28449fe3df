"""Two CPU generations on the same cores: how long each takes alone and beside another, per OpenMP wait setting.

Runs `sgi2v generate` on the bundled `sprites` example (the shipped sprites model, 128 x 128, 14 frames, SG-I2V's
defaults) as separate processes, each with torch's default thread count (every core), once alone and then two at
once, under each environment setting given. torch's CPU build uses GNU OpenMP, whose idle threads spin for a while
before they sleep; two processes whose threads outnumber the cores then take the cores from each other.
`OMP_WAIT_POLICY=PASSIVE` makes idle threads sleep at once; `GOMP_SPINCOUNT` sets how long they spin. Neither
changes the frames (the script checks that every run wrote the same `frames_sha256`).

    python benchmarks/cpu_sharing.py --steps 25 --repeats 2 --json benchmarks/results/cpu-sharing.json

Run it on a quiet machine: anything else on the cores is what it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SETTINGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin3000": {"GOMP_SPINCOUNT": "3000"}}


def _command(out: Path, steps: int) -> list[str]:
    from sgi2v.cli import EXAMPLES_DIR

    example = EXAMPLES_DIR / "sprites"
    return [sys.executable, "-m", "sgi2v", "generate", str(example / "image.png"), "--traj",
            str(example / "trajectory.json"), "--model", "sprites", "--num-inference-steps", str(steps), "-o", str(out)]


def _run_together(count: int, env_extra: dict, steps: int, folder: Path, tag: str) -> list[dict]:
    """Start ``count`` generations at once; wall seconds of each, from the common start to its own exit (each process
    is waited for in its own thread, so one that ends first is not timed by the other), and its frames' hash."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    outs = [folder / f"{tag}-{k}.mp4" for k in range(count)]
    started = time.perf_counter()
    procs = [subprocess.Popen(_command(out, steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for out in outs]
    ended, errors = [0.0] * count, [""] * count

    def wait(k: int) -> None:
        errors[k] = procs[k].communicate()[1]
        ended[k] = time.perf_counter() - started

    waiters = [threading.Thread(target=wait, args=(k,)) for k in range(count)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    results = []
    for out, proc, seconds, err in zip(outs, procs, ended, errors):
        if proc.returncode != 0:
            raise SystemExit(f"cpu_sharing: {tag}: sgi2v generate failed ({proc.returncode}): {err.strip()[-500:]}")
        record = json.loads(out.with_suffix(".json").read_text())
        results.append({"seconds": round(seconds, 2), "frames_sha256": record["frames_sha256"]})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25, the demo's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)} (known: {', '.join(SETTINGS)})")

    rows, hashes = {name: {"alone": [], "pair": []} for name in names}, set()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name in names:
                for count, key in ((1, "alone"), (2, "pair")):
                    runs = _run_together(count, SETTINGS[name], args.steps, Path(tmp), f"{name}-{key}-{rep}")
                    rows[name][key].append([r["seconds"] for r in runs])
                    hashes.update(r["frames_sha256"] for r in runs)
                    print(f"{name:9s} {key:5s} repeat {rep}: " + ", ".join(f"{r['seconds']:.1f} s" for r in runs),
                          flush=True)
    if len(hashes) != 1:
        raise SystemExit(f"cpu_sharing: the settings changed the frames ({len(hashes)} different hashes)")

    print("\n| setting | environment | one run alone, s | each of two at once, s |\n| --- | --- | --- | --- |")
    for name in names:
        alone = [s for runs in rows[name]["alone"] for s in runs]
        pair = [s for runs in rows[name]["pair"] for s in runs]
        env = " ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "(unset)"
        print(f"| {name} | {env} | {min(alone):.1f}-{max(alone):.1f} | {min(pair):.1f}-{max(pair):.1f} |")
    if args.json:
        import torch

        record = {"steps": args.steps, "repeats": args.repeats, "settings": {n: SETTINGS[n] for n in names},
                  "seconds": rows, "frames_sha256": hashes.pop(),
                  "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "torch": torch.__version__,
                              "threads": torch.get_num_threads()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
