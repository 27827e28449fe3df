"""Generate many videos from a manifest (one JSON object per line: id, image, traj, optional seed and
settings), on one process or on many under torchrun or accelerate launch, each process with its own
device. Writes DIR/ID.mp4 and the same side files and run record as `sgi2v generate`; a rerun skips
finished samples; bad lines go to DIR/failures.jsonl while the others go on (exit code 1 if any
failed). See docs/batch.md."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "ManifestError", "read_manifest", "derive_seed", "sample_options", "is_complete", "add_arguments", "run"]

logger = logging.getLogger("sgi2v")

FAILURES_NAME = "failures.jsonl"
REQUIRED_KEYS = ("id", "image", "traj")
#: Per-line settings: manifest key -> (attribute of the command line's namespace, kind of value).
OVERRIDES = {
    "seed": ("seed", "seed"),
    "height": ("height", "int"),
    "width": ("width", "int"),
    "frames": ("frames", "int"),
    "steps": ("steps", "int"),
    "fps": ("fps", "int"),
    "motion_bucket_id": ("motion_bucket_id", "int"),
    "noise_aug_strength": ("noise_aug_strength", "number"),
    "min_guidance_scale": ("min_guidance_scale", "number"),
    "max_guidance_scale": ("max_guidance_scale", "number"),
    "decode_chunk_size": ("decode_chunk_size", "int"),
    "optimize_timesteps": ("optimize_timesteps", "timesteps"),
    "iterations": ("iterations", "int"),
    "lr": ("lr", "number"),
    "feature_layers": ("feature_layers", "layers"),
    "heatmap_sigma": ("heatmap_sigma", "number"),
    "hf_reinit": ("no_hf_reinit", "bool"),
    "cutoff": ("cutoff", "number"),
    "butterworth_order": ("butterworth_order", "int"),
}
ALLOWED_KEYS = (*REQUIRED_KEYS, *OVERRIDES, "meta")
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# An id ending like this would share file names with another id's side files (ID.overlay.mp4, ...).
RESERVED_ID_SUFFIXES = (".overlay", ".condition", ".replay")
MAX_SEED = 2**63 - 1


class ManifestError(ValueError):
    """The manifest as a whole is unusable (duplicate or unsafe ids, unknown or missing keys)."""


@dataclass(frozen=True)
class Entry:
    """One sample line of a manifest: its decoded object, or why it could not be decoded."""

    line: int  # 1-based line number in the manifest
    data: dict | None = None
    error: str | None = None  # set when the line is not a JSON object; such a line is a failure, not fatal

    @property
    def id(self) -> str | None:
        return self.data["id"] if self.data is not None else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sgi2v batch`` options: the manifest, the output folder, and the ``generate`` model and sampling options."""
    from .cli import _add_generation_options, _add_model_options

    parser.add_argument("manifest", help="JSON lines: {\"id\": ..., \"image\": ..., \"traj\": FILE or {...}, \"seed\": ..., "
                                         "settings...}; relative paths are relative to the manifest's folder")
    parser.add_argument("-o", "--output", required=True, help="output folder: ID.mp4, ID.overlay.mp4, ID.condition.png, ID.json "
                                                              "per sample, and failures.jsonl")
    parser.add_argument("--gif", action="store_true", help="also write ID.gif")
    _add_model_options(parser)
    _add_generation_options(parser)
    for action in parser._actions:
        if action.dest == "seed":
            action.help = "seed of the samples whose line gives none (default: derived from each sample's id)"


def derive_seed(sample_id: str) -> int:
    """The seed of a sample that gives none: the first 4 bytes of the SHA-256 of its id (0 .. 2**32 - 1).

    It depends on the id only, so a sample gets the same noise whichever process runs it.
    """
    return int.from_bytes(hashlib.sha256(sample_id.encode("utf-8")).digest()[:4], "big")


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    """Read a manifest and check it as a whole.

    Blank lines and lines starting with ``#`` are skipped. A line that is not a JSON object becomes an
    :class:`Entry` with an ``error`` (a failure of that sample only). Objects must have a safe, unique
    ``id`` and the keys ``image`` and ``traj``, and no keys other than :data:`ALLOWED_KEYS`; otherwise
    :class:`ManifestError` names the first problem. Values are checked when the sample runs.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a folder, not a manifest file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read the manifest: {err}") from None
    entries: list[Entry] = []
    first_line: dict[str, tuple[int, str]] = {}  # lower-cased id -> (line, id): ids differing in case clash on some file systems
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}: line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            entries.append(Entry(number, error=f"line {number}: malformed JSON at column {err.colno}: {err.msg}"))
            continue
        if not isinstance(data, dict):
            entries.append(Entry(number, error=f"line {number}: expected a JSON object, got {type(data).__name__}"))
            continue
        if "id" not in data:
            raise ManifestError(f"{where}: missing 'id'")
        sample_id = data["id"]
        if not isinstance(sample_id, str):
            raise ManifestError(f"{where}: id must be a string, got {sample_id!r}")
        if not ID_PATTERN.fullmatch(sample_id) or sample_id.endswith(RESERVED_ID_SUFFIXES):
            raise ManifestError(f"{where}: id {sample_id!r} is not a safe file name (1 to 128 letters, digits, '_', '.', '-', "
                                f"not starting with '.' or '-', not ending in {', '.join(RESERVED_ID_SUFFIXES)})")
        unknown = sorted(set(data) - set(ALLOWED_KEYS))
        if unknown:
            raise ManifestError(f"{where} (id {sample_id!r}): unknown key {unknown[0]!r} (allowed: {', '.join(ALLOWED_KEYS)})")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ManifestError(f"{where} (id {sample_id!r}): missing {missing[0]!r}")
        previous = first_line.get(sample_id.lower())
        if previous is not None:
            same = "" if previous[1] == sample_id else f" (same file names as {previous[1]!r} on case-insensitive file systems)"
            raise ManifestError(f"{where}: duplicate id {sample_id!r}{same}, first on line {previous[0]}")
        first_line[sample_id.lower()] = (number, sample_id)
        entries.append(Entry(number, data=data))
    if not entries:
        raise ManifestError(f"{path}: no samples (every line is blank or a comment)")
    return entries


def is_complete(out_dir: str | os.PathLike, sample_id: str) -> bool:
    """Whether ``out_dir/<id>.json`` is a finished run record whose listed output files all exist.

    The record is renamed into place after every other output, so its presence marks completion.
    """
    out_dir = Path(out_dir)
    try:
        record = json.loads((out_dir / f"{sample_id}.json").read_text())
    except (OSError, ValueError):
        return False
    outputs = record.get("outputs") if isinstance(record, dict) else None
    if not isinstance(outputs, dict) or "video" not in outputs or "frames_sha256" not in record:
        return False
    return all(isinstance(name, str) and (out_dir / name).is_file() for name in outputs.values())


def _output_paths(out_dir: Path, sample_id: str, gif: bool) -> dict[str, Path]:
    from .runner import output_paths

    return output_paths(out_dir / f"{sample_id}.mp4", gif=gif)


def _remove_stale_temporaries(out_dir: Path, sample_id: str) -> None:
    """Remove temporary files of this sample left by a run that was killed while writing."""
    names = {p.name for p in _output_paths(out_dir, sample_id, gif=True).values()}
    pattern = re.compile(r"\.(" + "|".join(re.escape(n) for n in names) + r")\.tmp\d+")
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        if pattern.fullmatch(path.name):
            logger.info("removing %s, left by an interrupted run", path)
            path.unlink(missing_ok=True)


def _check_value(key: str, kind: str, value):
    """A per-line setting, converted to what the command line's namespace holds; ValueError if malformed."""
    from .cli import _timesteps

    def fail(expected: str):
        raise ValueError(f"{key}: expected {expected}, got {value!r}")

    if kind in ("int", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        if kind == "seed" and not 0 <= value <= MAX_SEED:
            fail(f"an integer from 0 to {MAX_SEED}")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail("a finite number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            fail("true or false")
        return not value  # stored as --no-hf-reinit
    if kind == "timesteps":
        if isinstance(value, str):
            try:
                return _timesteps(value)
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"{key}: {err}") from None
        if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(sorted(set(value), reverse=True))
        fail("a list of integers or a text like \"30-45\"")
    if kind == "layers":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return ",".join(value)
        fail("a list of layer names")
    raise AssertionError(kind)  # pragma: no cover


def sample_options(args: argparse.Namespace, data: dict) -> tuple[argparse.Namespace, str]:
    """The command line's options with a manifest line's settings applied, and where the seed came from."""
    options = argparse.Namespace(**vars(args))
    for key, (attribute, kind) in OVERRIDES.items():
        if key in data:
            setattr(options, attribute, _check_value(key, kind, data[key]))
    if "seed" in data:
        seed_from = "manifest"
    elif args.seed is not None:
        seed_from = "--seed"
    else:
        options.seed, seed_from = derive_seed(data["id"]), "id"
    return options, seed_from


def _sample_settings(args: argparse.Namespace, data: dict):
    """(Settings, SGI2VConfig, where the seed came from) of one manifest line."""
    from .cli import _config_from_args, _settings_from_args

    options, seed_from = sample_options(args, data)
    settings = _settings_from_args(options, 25 if args.xt else 14)
    return settings, _config_from_args(options, settings.num_inference_steps), seed_from


def _input_path(value, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a file path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _one_line(err: BaseException) -> str:
    from .cli import _one_line as one_line

    text = one_line(err)
    if not isinstance(err, (ValueError, OSError, RuntimeError)):
        text = f"{type(err).__name__}: {text}"
    return text


@dataclass
class _Context:
    """What every sample of one process shares."""

    args: argparse.Namespace
    manifest: Path
    out_dir: Path
    model: str
    device: object
    dtype: object
    rank: int = 0
    world: int = 1
    num_frames: int = 14
    pipe: object = None

    def pipeline(self):
        """The process's pipeline, loaded when the first sample needs it (not at all when every sample is bad).

        A model or device that cannot be used stops the run: it is not one sample's failure.
        """
        if self.pipe is None:
            from .models import load_pipeline

            try:
                self.pipe = load_pipeline(self.model, device=self.device, dtype=self.dtype, num_frames=self.num_frames,
                                          offload=self.args.offload)
            except Exception as err:
                raise _Fatal(err) from err
            self.pipe.set_progress_bar_config(disable=True)
        return self.pipe


class _Fatal(Exception):
    """Wraps an error that ends the whole run."""


def _generate_sample(ctx: _Context, entry: Entry) -> None:
    """Make one sample's outputs; raises on any problem (the caller records it as a failure)."""
    from .boxes import validate_boxes
    from .runner import Timer, generate_frames, load_inputs, run_record, write_outputs

    data = entry.data
    timer = Timer()
    with timer("prepare"):
        settings, config, seed_from = _sample_settings(ctx.args, data)
        image_path = _input_path(data["image"], "image", ctx.manifest.parent)
        traj = data["traj"]
        if not isinstance(traj, dict):
            traj = _input_path(traj, "traj", ctx.manifest.parent)
        image, boxes, labels, inputs = load_inputs(image_path, traj, settings, source="traj")
        validate_boxes(boxes, settings.num_frames, settings.height, settings.width)
    with timer("generate"):
        frames, losses = generate_frames(ctx.pipeline(), image, boxes, config, settings)
    record = run_record(inputs=inputs, model=ctx.model, device=ctx.device, dtype=ctx.dtype, offload=ctx.args.offload,
                        settings=settings, config=config, boxes=boxes, labels=labels, frames=frames, losses=losses,
                        timings={**timer.times, "total": sum(timer.times.values())})
    record["batch"] = {"id": entry.id, "manifest": str(ctx.manifest), "line": entry.line, "seed_from": seed_from,
                       "process": ctx.rank, "processes": ctx.world}
    if "meta" in data:
        record["batch"]["meta"] = data["meta"]
    write_outputs(_output_paths(ctx.out_dir, entry.id, ctx.args.gif), frames, image, boxes, record, settings.fps)


def _settings_differ(args: argparse.Namespace, out_dir: Path, entry: Entry, model: str) -> str | None:
    """What differs between a finished sample's record and what this run would use (None when nothing does)."""
    try:
        settings, config, _ = _sample_settings(args, entry.data)
        record = json.loads((out_dir / f"{entry.id}.json").read_text())
    except Exception:  # a bad line: it would fail anyway; a finished record is kept as it is
        return None
    wanted = {"model": model, **{f"settings.{k}": v for k, v in settings.to_dict().items()},
              **{f"config.{k}": v for k, v in json.loads(json.dumps(config.to_dict())).items()}}
    have = {"model": record.get("model"), **{f"settings.{k}": v for k, v in record.get("settings", {}).items()},
            **{f"config.{k}": v for k, v in record.get("config", {}).items()}}
    for key, value in wanted.items():
        if have.get(key) != value:
            return f"{key} {have.get(key)!r} there, {value!r} now"
    return None


def _merge_failures(out_dir: Path, manifest: Path, ids: set[str], failures: list[dict]) -> Path | None:
    """Rewrite ``failures.jsonl``: this run's failures, plus earlier ones about samples this run did not judge.

    Returns the file, or None when no failures remain (the file is then removed).
    """
    path = out_dir / FAILURES_NAME
    kept = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                old = json.loads(line)
            except ValueError:
                continue
            if not isinstance(old, dict):
                continue
            if old.get("id") in ids or (old.get("id") is None and old.get("manifest") == str(manifest)):
                continue  # judged again by this run
            kept.append(old)
    merged = kept + sorted(failures, key=lambda f: f["line"])
    if not merged:
        path.unlink(missing_ok=True)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text("".join(json.dumps(f) + "\n" for f in merged), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def run(args: argparse.Namespace) -> int:
    """``sgi2v batch``: returns 0 when every sample is done or skipped, 1 (from the first process) when some failed."""
    import torch
    from accelerate import PartialState

    from .cli import UsageError, _config_from_args, _settings_from_args
    from .models import DEFAULT_MODEL, XT_MODEL, resolve_device, resolve_dtype

    start = time.perf_counter()
    launched_rank = int(os.environ.get("RANK", "0"))
    manifest = Path(args.manifest).expanduser().resolve()
    out_dir = Path(args.output).expanduser().resolve()
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{args.output}: exists and is not a folder")
        base = _settings_from_args(args, 25 if args.xt else 14)  # checks the command line's own values
        _config_from_args(args, base.num_inference_steps)
        entries = read_manifest(args.manifest)
    except (UsageError, ValueError):
        if launched_rank != 0:  # every process finds the same problem; the first one reports it
            return 2
        raise
    model = args.model or (XT_MODEL if args.xt else DEFAULT_MODEL)

    requested = resolve_device(args.device)
    state = PartialState(cpu=requested.type == "cpu")
    rank, world = state.process_index, state.num_processes
    if world == 1:
        device = requested
    elif args.device in ("auto", requested.type):
        device = state.device
    else:
        raise UsageError(f"--device {args.device}: with {world} processes each one uses its own device; "
                         f"give --device auto or {requested.type}")
    if device.type == "cpu":
        device = torch.device("cpu")
    dtype = resolve_dtype(args.dtype, device)
    dist = _distributed()

    # The first process decides what is left to do and tells the others, so that all split the same list.
    if rank == 0:
        complete = [entry.id is not None and is_complete(out_dir, entry.id) for entry in entries]
        for entry, done in zip(entries, complete):
            if done:
                differs = _settings_differ(args, out_dir, entry, model)
                if differs:
                    logger.warning("%s: kept the finished outputs, made with other settings (%s); delete %s.json to redo it",
                                   entry.id, differs, entry.id)
        shared = [complete]
    else:
        shared = [None]
    if dist is not None:
        dist.broadcast_object_list(shared, src=0)
    complete = shared[0]
    skipped = sum(complete)
    pending = [entry for entry, done in zip(entries, complete) if not done]
    mine = pending[rank::world]
    logger.info("process %d of %d on %s: %d of %d pending samples", rank, world, device, len(mine), len(pending))

    ctx = _Context(args=args, manifest=manifest, out_dir=out_dir, model=model, device=device, dtype=dtype, rank=rank, world=world,
                   num_frames=base.num_frames)
    failures: list[dict] = []
    done = 0
    if mine:
        try:
            done, failures = _work(ctx, mine, state.local_process_index)
        except _Fatal as fatal:
            raise fatal.__cause__ from None

    results = [(done, failures)]
    if dist is not None:
        results = [None] * world
        dist.all_gather_object(results, (done, failures))
    done = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]
    if rank == 0:
        ids = {entry.id for entry in entries if entry.id is not None}
        failures_file = _merge_failures(out_dir, manifest, ids, failures)
        summary = (f"batch: {done} done, {skipped} skipped (already complete), {len(failures)} failed, of {len(entries)} samples; "
                   f"{world} process{'es' if world > 1 else ''}, {time.perf_counter() - start:.1f} s; outputs in {out_dir}")
        if failures:
            summary += f"; failures in {failures_file}"
        print(summary, flush=True)
    if dist is not None:
        state.wait_for_everyone()
        dist.destroy_process_group()
    # The first process carries the outcome: a launcher that sees one process fail stops the others.
    return 1 if failures and rank == 0 else 0


def _work(ctx: _Context, mine: list[Entry], position: int) -> tuple[int, list[dict]]:
    """Run this process's samples; returns how many were made and the failures."""
    import datetime

    import torch
    from tqdm import tqdm

    rank = ctx.rank
    show_bar = sys.stderr.isatty() or os.environ.get("SGI2V_PROGRESS") == "1"
    done, failures = 0, []
    with tqdm(total=len(mine), desc=f"rank {rank}", position=position, unit="video", disable=not show_bar,
              dynamic_ncols=True) as bar:
        for count, entry in enumerate(mine, start=1):
            began = time.perf_counter()
            label = entry.id if entry.id is not None else f"line {entry.line}"
            try:
                if entry.error is not None:
                    raise ValueError(entry.error)
                _remove_stale_temporaries(ctx.out_dir, entry.id)
                _generate_sample(ctx, entry)
            except (KeyboardInterrupt, _Fatal):
                raise
            except Exception as err:
                if os.environ.get("SGI2V_DEBUG"):
                    logger.exception("%s failed", label)
                message = _one_line(err)
                logger.warning("%s: failed: %s", label, message)
                failures.append({"id": entry.id, "line": entry.line, "manifest": str(ctx.manifest), "error": message,
                                 "rank": rank, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
                if ctx.device.type == "cuda":
                    torch.cuda.empty_cache()
                status = "failed"
            else:
                done += 1
                status = "done"
            bar.update(1)
            if not show_bar:
                print(f"[rank {rank}] {count}/{len(mine)} {label}: {status} in {time.perf_counter() - began:.1f} s", flush=True)
    return done, failures
