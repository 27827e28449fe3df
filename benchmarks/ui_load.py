"""The web app under load and over time, driven over HTTP on loopback by ``gradio_client``, as pages drive it.

It starts the real server (``sgi2v ui --model tiny-random``) in its own process, with its own temporary folder, and:

* ``load`` (default): N concurrent sessions (8), each uploading an image, editing its trajectory twice with a
  preview each time, and generating. Roles: most finish; one cancels its run midway, one cancels while it waits in
  the queue, one closes its page while its run computes. The queue is smaller than the crowd, so some are refused
  and try again. Checked: every finished video's frames hash to its run record's ``frames_sha256``; waiting
  sessions were told their queue position; a refusal is a message, not a hang; a cancelled run gives the device to
  the next one at once; once every page is closed the server's folder holds no session's files.
* ``soak``: N generations back to back (200), one session at a time (each a new page, closed after its run).
  The server's resident memory and open file descriptors are sampled after each run, and the files in its folder.

    python benchmarks/ui_load.py load --json benchmarks/results/ui-load.json
    python benchmarks/ui_load.py soak --runs 200 --json benchmarks/results/ui-soak.json --plot benchmarks/ui_soak.png

Prints its figures and writes them as JSON. Linux only (it reads the server's memory and descriptors in /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# A small run of the tiny model: a few seconds on a CPU, so that a queue forms.
HEIGHT, WIDTH, FRAMES, STEPS = 64, 128, 4, 12
SGI2V_SETTINGS = {"optimize_timesteps": "", "iterations": 3}  # the paper's window, moved to the steps given


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``sgi2v ui`` in its own process, with its own temporary folder."""

    def __init__(self, queue_size: int, threads: int | None = None):
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started in the background by a script, this process ignores SIGINT, and the server would inherit that
            # (an ignored signal stays ignored across exec) and not stop on the Ctrl-C that stop() sends it.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.tmp = Path(tempfile.mkdtemp(prefix="sgi2v-ui-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # gradio_client drops a closed page's heartbeat connection only when the next heartbeat arrives (every 15 s by
        # default), and the server learns that the page is gone from that connection; a browser drops it at once (its
        # session's folder goes within a second of closing the tab: tests/test_ui.py). A heartbeat every second makes
        # this harness's closed pages go about as fast as a browser's.
        env = dict(os.environ, TMPDIR=str(self.tmp), GRADIO_ANALYTICS_ENABLED="False", GRADIO_HEARTBEAT_INTERVAL="1")
        # Fewer threads: the server may use only that many cores (it sizes torch's threads by its cores).
        limit = (lambda: os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))) if threads else None
        self.log = open(self.tmp.with_suffix(".log"), "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "sgi2v", "ui", "--model", "tiny-random", "--device", "cpu",
                                      "--port", str(self.port), "--queue-size", str(queue_size)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
        deadline = time.monotonic() + 120
        while "Running on local URL" not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{self.log_text()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def files(self) -> list[str]:
        """Every file under the server's temporary folder, relative to it."""
        return sorted(str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*") if p.is_file())

    def session_folders(self) -> list[str]:
        return sorted(p.name for p in self.tmp.glob("sgi2v-ui-*/session-*"))

    def folder_census(self) -> dict:
        """The server folder's files by owner: the shared example thumbnails, the open sessions' folders, the folders
        Gradio put uploads in (a page's uploads are moved under its session once used), and anything else (strays)."""
        files = self.files()
        owner = lambda f: ("examples" if f.split("/")[1] == "examples" else "session" if f.split("/")[1].startswith("session-")
                           else "upload" if len(f.split("/")) == 3 else "stray")
        return {"files": len(files), "session_folders": len(self.session_folders()),
                "upload_folders": len({f.split("/")[1] for f in files if owner(f) == "upload"}),
                "stray_files": [f for f in files if owner(f) == "stray"]}

    stop_stacks: str | None = None

    def stacks(self) -> str:
        """The server's threads' stacks, by ``py-spy dump`` when it is installed (``pip install py-spy``)."""
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if spy is None:
            return "py-spy is not installed"
        run = subprocess.run([spy, "dump", "--pid", str(self.proc.pid)], capture_output=True, text=True, timeout=60)
        return run.stdout + run.stderr

    def stop(self) -> float:
        """SIGINT, as Ctrl-C; returns the seconds it took to exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.stop_stacks = self.stacks()  # where a slow stop spends its time
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        seconds = time.monotonic() - start
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return seconds


def make_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([x * 2, y * 3, (x + y)], -1) % 256
    noise = rng.integers(0, 40, (HEIGHT, WIDTH, 3))
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path)


def drawing(seed: int, shift: float = 0.0) -> str:
    """The editor's value: one box with a path, in the prepared image's pixels."""
    rng = np.random.default_rng(seed)
    x0, y0 = float(rng.uniform(4, WIDTH / 2)), float(rng.uniform(4, HEIGHT / 2))
    w, h = 24.0, 20.0
    start = [x0 + w / 2, y0 + h / 2]
    end = [min(WIDTH - 2.0, start[0] + 20 + shift), min(HEIGHT - 2.0, start[1] + 8)]
    return json.dumps({"boxes": [{"box": [x0, y0, x0 + w, y0 + h], "path": [start, end]}]})


def generate_args(drawn: str, seed: int, info: dict, steps: int = STEPS) -> list:
    """The /on_generate arguments: the page's defaults, with the small size and a few steps."""
    labels = {"Model": "tiny-random", "Height": HEIGHT, "Width": WIDTH, "Frames": FRAMES, "Steps": steps, "Seed": seed,
              "Optimise at timesteps": SGI2V_SETTINGS["optimize_timesteps"],
              "Iterations per step": SGI2V_SETTINGS["iterations"]}
    params = info["named_endpoints"]["/on_generate"]["parameters"]
    values = [drawn]
    for p in params[1:]:
        values.append(labels.get(p["label"], p.get("parameter_default")))
    return values


@dataclass
class SessionResult:
    index: int
    role: str
    times: dict = field(default_factory=dict)
    ranks: list = field(default_factory=list)  # queue positions shown while waiting
    refusals: list = field(default_factory=list)  # generations refused by the full queue
    quick_refusals: list = field(default_factory=list)  # uploads and previews refused (they skip the queue: none expected)
    outcome: str = ""
    video_sha_ok: bool | None = None
    error: str | None = None


def _dependency(client, api_name: str) -> dict:
    return next(d for d in client.config["dependencies"] if d.get("api_name") == api_name.lstrip("/"))


def skips_queue(client, api_name: str) -> bool:
    """Whether the page sends this event outside the queue (its dependency says ``queue: false``), as Gradio's page
    decides; ``gradio_client`` itself always joins the queue."""
    queued = _dependency(client, api_name).get("queue")
    return not client.config.get("enable_queue", True) if queued is None else not queued


def direct(client, api_name: str, *args):
    """An event outside the queue, as the page sends it: files uploaded first, then one POST to the event's run
    route with the session's hash (a session state input is sent empty: the server keeps it). ``args`` are the
    inputs without the states, as ``gradio_client`` takes them. Returns the outputs, states left out (a file as
    Gradio's dict, with its ``path`` on the server)."""
    import httpx

    url = client.src if client.src.endswith("/") else client.src + "/"
    kinds = {c["id"]: c.get("type") for c in client.config["components"]}
    dependency = _dependency(client, api_name)
    given = iter(args)
    data = []
    for arg in (None if kinds.get(i) == "state" else next(given) for i in dependency["inputs"]):
        if isinstance(arg, dict) and arg.get("meta", {}).get("_type") == "gradio.FileData" and "url" not in arg:
            local = Path(arg["path"])
            with local.open("rb") as f:
                answer = httpx.post(f"{url}gradio_api/upload", files=[("files", (local.name, f))], timeout=120)
            answer.raise_for_status()
            arg = {"path": answer.json()[0], "orig_name": local.name, "meta": {"_type": "gradio.FileData"}}
        data.append(arg)
    answer = httpx.post(f"{url}gradio_api/run/{api_name.lstrip('/')}",
                        json={"data": data, "session_hash": client.session_hash}, timeout=300)
    if answer.status_code != 200:
        raise RuntimeError(f"{api_name}: HTTP {answer.status_code}: {' '.join(answer.text.split())[:300]}")
    outputs = answer.json()["data"]
    return [value for i, value in zip(dependency["outputs"], outputs) if kinds.get(i) != "state"]


def file_sha256(path: str) -> str:
    from sgi2v.generation import file_sha256 as sha

    return sha(path)


def run_session(url: str, index: int, role: str, image: Path, info: dict, t0: float, retry_for: float = 120.0,
                steps: int = STEPS) -> SessionResult:
    """One page: upload, two edits with their previews, generate (then, by role, cancel or close)."""
    from gradio_client import Client, handle_file
    from gradio_client.client import Status

    result = SessionResult(index, role)

    def mark(name):
        result.times[name] = round(time.monotonic() - t0, 3)

    def ask(*args, api_name):
        """A quick request (upload, preview), sent as the page sends it: outside the queue when its event skips the
        queue, else through it. A refusal by a full queue is counted and the request asked again, as a user would."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                if skips_queue(client, api_name):
                    return direct(client, api_name, *args)
                return client.predict(*args, api_name=api_name)
            except Exception as err:
                if "Queue is full" not in str(err) or time.monotonic() > deadline:
                    raise
                result.quick_refusals.append(" ".join(str(err).split()))
                time.sleep(2.0)

    client = Client(url, verbose=False)
    try:
        mark("open")
        ask(handle_file(str(image)), FRAMES, WIDTH, HEIGHT, "stretch", api_name="/on_upload")
        mark("uploaded")
        for edit in range(2):
            drawn = drawing(index, shift=4.0 * edit)
            preview, status = ask(drawn, "tiny-random", FRAMES, WIDTH, HEIGHT, "stretch", 7, api_name="/on_preview")
            if not preview:
                raise RuntimeError(f"no preview: {status}")
        mark("previewed")
        if role == "cancel-queued":
            time.sleep(2.0)  # after the others have asked: the device is taken, so this one waits in the queue
        deadline = time.monotonic() + retry_for
        while True:
            job = client.submit(*generate_args(drawn, 100 + index, info, steps), api_name="/on_generate")
            mark("submitted")
            started = False
            refused = None
            while not job.done():
                update = job.status()
                if update.code == Status.IN_QUEUE and update.rank is not None:
                    if not result.ranks or result.ranks[-1] != update.rank:
                        result.ranks.append(update.rank)
                if update.code in (Status.PROCESSING, Status.PROGRESS) and not started:
                    started = True
                    mark("started")
                if role == "cancel-queued" and update.code == Status.IN_QUEUE and update.rank is not None:
                    job.cancel()
                    mark("cancelled")
                    result.outcome = "cancelled while waiting"
                    return result
                if role == "cancel-running" and started and time.monotonic() - t0 - result.times["started"] > 1.0:
                    job.cancel()
                    mark("cancelled")
                    result.outcome = "cancelled while running"
                    return result
                if role == "close-page" and started and time.monotonic() - t0 - result.times["started"] > 1.0:
                    mark("closed")
                    result.outcome = "page closed while running"
                    client.close()
                    return result
                time.sleep(0.05)
            try:
                outputs = job.result()
            except Exception as err:  # the queue is full: a message, at once
                refused = " ".join(str(err).split())
            if refused is None:
                break
            mark("refused")
            result.refusals.append(refused)
            if time.monotonic() > deadline:
                result.outcome = "refused"
                return result
            time.sleep(2.0)  # try again, as a user would
        mark("finished")
        video, overlay, downloads, status = outputs
        if video is None:
            raise RuntimeError(f"no video: {status.get('value') if isinstance(status, dict) else status}")
        record = next(json.loads(Path(f).read_text()) for f in downloads if str(f).endswith(".json") and "trajectory" not in str(f))
        result.video_sha_ok = video is not None and file_sha256(video) == record["video_sha256"]
        result.outcome = "finished"
    except Exception as err:
        result.error = f"{type(err).__name__}: {' '.join(str(err).split())}"
        result.outcome = "error"
    finally:
        if role != "close-page":
            client.close()
    return result


def run_load(sessions: int, queue_size: int) -> dict:
    info_server = Server(queue_size)
    try:
        from gradio_client import Client

        probe = Client(info_server.url, verbose=False)
        info = probe.view_api(return_format="dict", print_info=False)
        probe.close()
        roles = ["finish"] * sessions
        roles[1], roles[2], roles[3] = "cancel-running", "cancel-queued", "close-page"
        images = []
        folder = Path(tempfile.mkdtemp(prefix="sgi2v-load-images-"))
        for i in range(sessions):
            images.append(folder / f"{i}.png")
            make_image(images[-1], i)
        t0 = time.monotonic()
        results: list[SessionResult | None] = [None] * sessions
        threads = []
        for i, role in enumerate(roles):
            def target(i=i, role=role):
                results[i] = run_session(info_server.url, i, role, images[i], info, t0)
            threads.append(threading.Thread(target=target))
            threads[-1].start()
            time.sleep(0.1)
        for thread in threads:
            thread.join(600)
        wall = time.monotonic() - t0
        time.sleep(3)  # late events of closed pages (a preview) come and go
        deadline = time.monotonic() + 30
        while info_server.session_folders() and time.monotonic() < deadline:
            time.sleep(0.5)
        left = info_server.session_folders()
        log = info_server.log_text()
        stop_s = info_server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    except BaseException:
        info_server.stop()
        raise
    done = [r for r in results if r and r.outcome == "finished"]
    finishes = sorted(r.times["finished"] for r in done)
    waits = [r.times["started"] - r.times["submitted"] for r in done if "started" in r.times]

    def next_start_after(moment):
        return min((r.times["started"] for r in results if "started" in r.times and r.times["started"] > moment), default=None)

    cancel = next(r for r in results if r.role == "cancel-running")
    next_start = next_start_after(cancel.times.get("cancelled", 1e9))
    closer = next(r for r in results if r.role == "close-page")
    after_close = next_start_after(closer.times.get("closed", 1e9))
    return {
        "sessions": sessions, "queue_size": queue_size, "wall_s": round(wall, 1),
        "finished": len(done), "videos_matching_their_record": sum(bool(r.video_sha_ok) for r in done),
        "throughput_videos_per_min": round(60 * len(done) / (finishes[-1] - min(r.times["submitted"] for r in done)), 2) if done else 0,
        "wait_s_of_last_in_queue": round(max(waits), 1) if waits else None,
        "queue_positions_shown": {r.index: r.ranks for r in results if r.ranks},
        "refusal_messages": sorted({m for r in results for m in r.refusals}),
        "quick_requests_refused": sum(len(r.quick_refusals) for r in results),
        "cancelled_run_freed_device_after_s": round(next_start - cancel.times["cancelled"], 2) if next_start and "cancelled" in cancel.times else None,
        "closed_page_run_freed_device_after_s": round(after_close - closer.times["closed"], 2) if after_close and "closed" in closer.times else None,
        "cancelled_runs_logged": log.count("a generation was cancelled"),
        "session_folders_left_after_all_pages_closed": left,
        "server_stop_s": round(stop_s, 2), "server_stop_stacks": info_server.stop_stacks,
        "errors": [r.error for r in results if r and r.error],
        "per_session": [asdict(r) for r in results if r],
    }


def run_soak(runs: int, steps: int = STEPS, threads: int | None = None) -> dict:
    server = Server(queue_size=4, threads=threads)
    samples = []
    try:
        from gradio_client import Client

        probe = Client(server.url, verbose=False)
        info = probe.view_api(return_format="dict", print_info=False)
        probe.close()
        image = server.tmp.parent / f"{server.tmp.name}-image.png"
        t0 = time.monotonic()
        failures = []
        for k in range(runs):
            make_image(image, k)  # each page its own picture: the server must not keep one per page
            result = run_session(server.url, k, "finish", image, info, t0, steps=steps)
            if result.outcome != "finished" or not result.video_sha_ok:
                failures.append({"run": k, "outcome": result.outcome, "error": result.error})
            time.sleep(0.2)
            samples.append({"run": k + 1, "t_s": round(time.monotonic() - t0, 1), "rss_mb": round(server.rss_mb(), 1),
                            "fds": server.fds(), **server.folder_census()})
            if (k + 1) % 10 == 0:
                print(f"soak: {k + 1}/{runs} runs, rss {samples[-1]['rss_mb']} MB, fds {samples[-1]['fds']}, "
                      f"files {samples[-1]['files']}", flush=True)
        deadline = time.monotonic() + 30
        while server.session_folders() and time.monotonic() < deadline:
            time.sleep(0.5)
        files_after = server.files()
        wall = time.monotonic() - t0
        stop_s = server.stop()
        image.unlink(missing_ok=True)
    except BaseException:
        server.stop()
        raise
    ref = samples[min(19, len(samples) - 1)]
    later = samples[20:] or samples[-1:]
    rss = [s["rss_mb"] for s in later]
    return {
        "runs": runs, "wall_s": round(wall, 1), "s_per_run": round(wall / runs, 2), "failures": failures,
        "rss_mb_after_20": ref["rss_mb"], "rss_mb_max_after_20": max(rss), "rss_mb_last": samples[-1]["rss_mb"],
        "rss_growth_after_20_pct": round(100 * (max(rss) - ref["rss_mb"]) / ref["rss_mb"], 1),
        "fds_after_20": ref["fds"], "fds_max_after_20": max(s["fds"] for s in later), "fds_last": samples[-1]["fds"],
        "files_max": max(s["files"] for s in samples), "files_after_all_pages_closed": files_after,
        "server_stop_s": round(stop_s, 2), "server_stop_stacks": server.stop_stacks, "samples": samples,
    }


def plot_soak(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [s["run"] for s in report["samples"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(runs, [s["rss_mb"] for s in report["samples"]])
    a.axhline(report["rss_mb_after_20"] * 1.1, color="grey", ls="--", lw=0.8, label="+10 % of run 20")
    a.set_xlabel("generations")
    a.set_ylabel("server resident memory (MB)")
    a.legend()
    b.plot(runs, [s["fds"] for s in report["samples"]], label="open file descriptors")
    b.plot(runs, [s["files"] for s in report["samples"]], label="files in its folder")
    b.set_xlabel("generations")
    b.legend()
    fig.suptitle(f"sgi2v ui, {report['runs']} generations back to back (tiny model, {WIDTH}x{HEIGHT}, {FRAMES} frames)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", info).group(1) + (" (AVX-512)" if "avx512f" in info else "")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="load", choices=["load", "soak"])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent sessions (load)")
    parser.add_argument("--queue-size", type=int, default=5, help="the server's --queue-size (load)")
    parser.add_argument("--runs", type=int, default=200, help="generations back to back (soak)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"denoising steps of each generation (default {STEPS})")
    parser.add_argument("--threads", type=int, default=None, help="cores the server may use, and so its torch threads (default: every core)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--plot", help="soak: plot memory, descriptors and files against runs here (PNG)")
    args = parser.parse_args(argv)
    if args.mode == "load":
        report = run_load(args.sessions, args.queue_size)
        summary = {k: v for k, v in report.items() if k != "per_session"}
    else:
        report = run_soak(args.runs, args.steps, args.threads)
        report.update(steps=args.steps, threads=args.threads)
        summary = {k: v for k, v in report.items() if k != "samples"}
    report["machine"] = machine()
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.mode == "soak" and args.plot:
        try:
            plot_soak(report, Path(args.plot))
        except ImportError:
            print("no plot: matplotlib is not installed (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
