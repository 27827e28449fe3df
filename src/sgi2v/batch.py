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
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "ManifestError", "read_manifest", "derive_seed", "sample_request", "is_complete", "add_arguments", "run"]

logger = logging.getLogger("sgi2v")

FAILURES_NAME = "failures.jsonl"
REQUIRED_KEYS = ("id", "image", "traj")
OTHER_KEYS = ("meta",)
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# An id ending like this would share file names with another id's side files (ID.overlay.mp4, ...).
RESERVED_ID_SUFFIXES = (".overlay", ".condition", ".replay")
#: Default time the processes wait for each other when they start and finish (a rank that ends its
#: share hours before the slowest one must not abort the job).
DEFAULT_COLLECTIVE_TIMEOUT_HOURS = 24.0
#: How often the first process looks for the other processes' results at the end.
POLL_SECONDS = 2.0


def allowed_keys() -> tuple[str, ...]:
    """The keys a manifest line may have: id, image, traj, meta, how to read traj (traj_format, box_size, canvas_size,
    timing) and every setting (or an older name of one)."""
    from .formats import TrajectoryOptions
    from .schema import specs
    from .settings import alias_names, setting_specs

    return (*REQUIRED_KEYS, *OTHER_KEYS, *specs(TrajectoryOptions), *setting_specs(), *alias_names())


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
    from .cli import add_model_options, add_setting_options, add_trajectory_options
    from .paths import IN_FILE, OUT_FOLDER, path_option

    path_option(parser.add_argument("manifest", help="JSON lines: {\"id\": ..., \"image\": ..., \"traj\": FILE or {...}, \"seed\": ..., "
                                         "settings...}; relative paths are relative to the manifest's folder"),
                IN_FILE, "manifest")
    path_option(parser.add_argument("-o", "--output", required=True, help="output folder: ID.mp4, ID.overlay.mp4, ID.condition.png, ID.json "
                                                              "per sample, and failures.jsonl"),
                OUT_FOLDER, "output folder")
    parser.add_argument("--gif", action="store_true", help="also write ID.gif")
    parser.add_argument("--collective-timeout", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_HOURS, metavar="HOURS",
                        help="how long processes wait for each other when they start and finish, in hours "
                             f"(default {DEFAULT_COLLECTIVE_TIMEOUT_HOURS:g}); under torchrun or accelerate only")
    add_trajectory_options(parser.add_argument_group("trajectory files (for lines that do not say)"))
    add_model_options(parser)
    add_setting_options(parser)
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
    allowed = allowed_keys()
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
        except RecursionError:
            entries.append(Entry(number, error=f"line {number}: JSON nested too deeply"))
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
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ManifestError(f"{where} (id {sample_id!r}): unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
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
    from .generation import output_paths

    return output_paths(out_dir / f"{sample_id}.mp4", gif=gif)


def sample_request(args: argparse.Namespace, data: dict, source: str, model: str):
    """(GenerationSettings, SGI2VConfig, where the seed came from) of one manifest line: its settings over
    the command line's, checked as every surface checks them."""
    from .cli import setting_values
    from .formats import TrajectoryOptions
    from .schema import specs
    from .settings import resolve_settings

    skipped = {*REQUIRED_KEYS, *OTHER_KEYS, *specs(TrajectoryOptions)}
    values = {k: v for k, v in data.items() if k not in skipped}
    defaults = setting_values(args)
    if "seed" in values:
        seed_from = "manifest"
    elif args.seed is not None:
        seed_from = "--seed"
    else:
        defaults["seed"], seed_from = derive_seed(data["id"]), "id"
    settings, config = resolve_settings(values, model=model, defaults=defaults, source=source)
    return settings, config, seed_from


def _check_process_settings(ctx: "_Context", settings, source: str) -> None:
    """A line may repeat the run's device, dtype and offloading (a record pasted into a manifest does), not change them:
    one pipeline serves every sample of a process."""
    wanted = ctx.settings
    if settings.device != "auto" and settings.device.split(":")[0] != ctx.device.type:
        raise ValueError(f"{source}: device: this run uses {ctx.device} (set on the command line), the line asks for {settings.device}")
    dtype = str(ctx.dtype).replace("torch.", "")
    if settings.dtype not in ("auto", dtype):
        raise ValueError(f"{source}: dtype: this run uses {dtype} (set on the command line), the line asks for {settings.dtype}")
    if settings.offload != wanted.offload:
        raise ValueError(f"{source}: offload: this run uses offload={str(wanted.offload).lower()} (set on the command line), "
                         f"the line asks for {str(settings.offload).lower()}")


def _input_path(value, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a file path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


@dataclass
class _Context:
    """What every sample of one process shares."""

    args: argparse.Namespace
    manifest: Path
    out_dir: Path
    model: str
    settings: object  # the command line's GenerationSettings
    device: object
    dtype: object
    rank: int = 0
    world: int = 1
    pipe: object = None

    def pipeline(self):
        """The process's pipeline, loaded when the first sample needs it (not at all when every sample is bad).

        A model or device that cannot be used stops the run: it is not one sample's failure.
        """
        if self.pipe is None:
            from .loading import load_pipeline

            try:
                self.pipe = load_pipeline(self.model, device=self.device, dtype=self.dtype, num_frames=self.settings.num_frames,
                                          offload=self.settings.offload)
            except Exception as err:
                raise _Fatal(err) from err
            self.pipe.set_progress_bar_config(disable=True)
        return self.pipe


class _Fatal(Exception):
    """Wraps an error that ends the whole run."""


def _generate_sample(ctx: _Context, entry: Entry) -> None:
    """Make one sample's outputs; raises on any problem (the caller records it as a failure)."""
    from .cli import trajectory_values
    from .formats import resolve_trajectory_options
    from .generation import Timer, generate, prepare_inputs, write_outputs

    data = entry.data
    timer = Timer()
    source = f"{ctx.manifest.name}: line {entry.line} (id {entry.id!r})"
    with timer("prepare"):
        settings, config, seed_from = sample_request(ctx.args, data, source, ctx.model)
        _check_process_settings(ctx, settings, source)
        image_path = _input_path(data["image"], "image", ctx.manifest.parent)
        options = resolve_trajectory_options(data, defaults=trajectory_values(ctx.args), source=source)
        traj = data["traj"]
        if not isinstance(traj, dict):
            traj = _input_path(traj, "traj", ctx.manifest.parent)
        prepared = prepare_inputs(image_path, traj, settings, source="traj", trajectory_options=options)
    batch = {"id": entry.id, "manifest": str(ctx.manifest), "line": entry.line, "seed_from": seed_from,
             "process": ctx.rank, "processes": ctx.world}
    if "meta" in data:
        batch["meta"] = data["meta"]
    with timer("generate"):
        generation = generate(prepared, settings, config, ctx.pipeline(), model=ctx.model, extra={"batch": batch})
    generation.record["timings"] = {**{k: round(v, 3) for k, v in timer.times.items()}, "total": round(timer.total, 3)}
    write_outputs(_output_paths(ctx.out_dir, entry.id, ctx.args.gif), generation, prepared, settings.fps)


#: Settings whose change does not change the frames (or that a run fixes for all samples): not compared on resume.
_NOT_COMPARED = ("device", "dtype", "offload", "threads", "gradient_checkpointing")


def _settings_differ(args: argparse.Namespace, out_dir: Path, entry: Entry, model: str) -> str | None:
    """What differs between a finished sample's record and what this run would use (None when nothing does)."""
    from .generation import record_settings

    try:
        settings, config, _ = sample_request(args, entry.data, "", model)
        record = json.loads((out_dir / f"{entry.id}.json").read_text())
        have = record_settings(record)
    except Exception:  # a bad line would fail anyway, and an old record is kept as it is
        return None
    wanted = {**settings.to_dict(), **json.loads(json.dumps(config.to_dict()))}
    if record.get("model") != model:
        return f"model {record.get('model')!r} there, {model!r} now"
    for key, value in wanted.items():
        if key not in _NOT_COMPARED and have.get(key) != value:
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
    from .generation import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(f) + "\n" for f in merged))
    return path


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _result_path(out_dir: Path, token: str, rank: int) -> Path:
    return out_dir / f".batch-{token}-rank{rank}.json"


def run(args: argparse.Namespace) -> int:
    """``sgi2v batch``: returns 0 when every sample is done or skipped, 1 (from the first process) when some failed."""
    import datetime
    import uuid

    from .cli import UsageError, model_name, setting_values
    from .generation import write_text_atomic
    from .settings import resolve_settings

    start = time.perf_counter()
    launched_rank = int(os.environ.get("RANK", "0"))
    manifest = Path(args.manifest).expanduser().resolve()
    out_dir = Path(args.output).expanduser().resolve()
    model = model_name(args)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{args.output}: exists and is not a folder")
        if not args.collective_timeout > 0:
            raise UsageError(f"--collective-timeout must be a positive number of hours, got {args.collective_timeout}")
        base, _ = resolve_settings(setting_values(args), model=model, source="")  # the command line's own values
        entries = read_manifest(args.manifest)
    except (UsageError, ValueError):
        if launched_rank != 0:  # every process finds the same problem; the first one reports it
            return 2
        raise

    # Several processes on one machine each use every core (the `threads` setting), so their OpenMP threads
    # outnumber the cores; threads that spin while they wait then take the cores from the other processes'
    # threads (two CPU processes on 2 cores took 4x as long as one). Waiting threads sleep instead, unless the
    # environment says otherwise: OpenMP reads this when torch loads it, just below. The frames do not change.
    if int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))) > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    # Only now the heavy libraries: the command line and the manifest are fine.
    import torch
    from accelerate import PartialState

    from .loading import resolve_device, resolve_dtype

    requested = resolve_device(base.device)
    timeout = datetime.timedelta(hours=args.collective_timeout)
    state = PartialState(cpu=requested.type == "cpu", timeout=timeout)
    rank, world = state.process_index, state.num_processes
    if world == 1:
        device = requested
    elif base.device in ("auto", requested.type):
        device = state.device
    else:
        raise UsageError(f"--device {base.device}: with {world} processes each one uses its own device; "
                         f"give --device auto or {requested.type}")
    if device.type == "cpu":
        device = torch.device("cpu")
    dtype = resolve_dtype(base.dtype, device, model)
    dist = _distributed()

    # The first process decides what is left to do and tells the others, so that all split the same list. This and
    # the wait at the end are the only times the processes wait for each other.
    if rank == 0:
        complete = [entry.id is not None and is_complete(out_dir, entry.id) for entry in entries]
        for entry, done in zip(entries, complete):
            if done:
                differs = _settings_differ(args, out_dir, entry, model)
                if differs:
                    logger.warning("%s: kept the finished outputs, made with other settings (%s); delete %s.json to redo it",
                                   entry.id, differs, entry.id)
        shared = [complete, uuid.uuid4().hex[:12]]
    else:
        shared = [None, None]
    if dist is not None:
        dist.broadcast_object_list(shared, src=0)
    complete, token = shared
    skipped = sum(complete)
    pending = [entry for entry, done in zip(entries, complete) if not done]
    mine = pending[rank::world]
    logger.info("process %d of %d on %s: %d of %d pending samples", rank, world, device, len(mine), len(pending))

    ctx = _Context(args=args, manifest=manifest, out_dir=out_dir, model=model, settings=base, device=device, dtype=dtype,
                   rank=rank, world=world)
    failures: list[dict] = []
    done = 0
    if mine:
        try:
            done, failures = _work(ctx, mine, state.local_process_index)
        except _Fatal as fatal:
            raise fatal.__cause__ from None

    # Each process leaves its result in the output folder and is free to end; the first one collects
    # them (no collective while others may still be generating, so no timeout can abort the job).
    if world > 1:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(_result_path(out_dir, token, rank), json.dumps({"done": done, "failures": failures}))
    missing: list[int] = []
    if rank == 0 and world > 1:
        results, missing = _collect(out_dir, token, world, timeout.total_seconds())
        done = sum(r["done"] for r in results)
        failures = [f for r in results for f in r["failures"]]
    if rank == 0:
        ids = {entry.id for entry in entries if entry.id is not None}
        failures_file = _merge_failures(out_dir, manifest, ids, failures)
        summary = (f"batch: {done} done, {skipped} skipped (already complete), {len(failures)} failed, of {len(entries)} samples; "
                   f"{world} process{'es' if world > 1 else ''}, {time.perf_counter() - start:.1f} s; outputs in {out_dir}")
        if failures:
            summary += f"; failures in {failures_file}"
        if missing:
            summary += f"; no result from process{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} (rerun to finish)"
        print(summary, flush=True)
    if dist is not None:
        dist.destroy_process_group()
    # The first process carries the outcome: a launcher that sees one process fail stops the others.
    return 1 if (failures or missing) and rank == 0 else 0


def _collect(out_dir: Path, token: str, world: int, timeout: float) -> tuple[list[dict], list[int]]:
    """The results of every process (waiting up to ``timeout`` seconds for them), and the ranks that left none."""
    deadline = time.monotonic() + timeout
    paths = {r: _result_path(out_dir, token, r) for r in range(world)}
    while not all(p.is_file() for p in paths.values()) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    results, missing = [], []
    for r, path in paths.items():
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            missing.append(r)
        path.unlink(missing_ok=True)
    return results, missing


def _work(ctx: _Context, mine: list[Entry], position: int) -> tuple[int, list[dict]]:
    """Run this process's samples; returns how many were made and the failures."""
    import datetime

    import torch
    from tqdm import tqdm

    from .cli import one_line
    from .generation import remove_stale_temporaries

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
                for path in remove_stale_temporaries(_output_paths(ctx.out_dir, entry.id, gif=True)):
                    logger.info("removed %s, left by an interrupted run", path)
                _generate_sample(ctx, entry)
            except (KeyboardInterrupt, _Fatal):
                raise
            except Exception as err:
                if os.environ.get("SGI2V_DEBUG"):
                    logger.exception("%s failed", label)
                message = one_line(err)
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
