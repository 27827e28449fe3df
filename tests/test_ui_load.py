"""The web app driven over HTTP as pages drive it (``gradio_client``), by the code of ``benchmarks/ui_load.py``:
a real server process on loopback, with its own temporary folder."""

import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ui_load  # noqa: E402


@pytest.fixture
def server():
    server = ui_load.Server(queue_size=4)
    yield server
    server.stop()


def _api(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    try:
        return client.view_api(return_format="dict", print_info=False)
    finally:
        client.close()


def test_a_cancelled_generation_stops_and_gives_the_device_to_the_next(server, tmp_path):
    """A long run is cancelled once it computes: it stops at its next step and leaves no files, and the run waiting
    behind it then runs and finishes (the queue runs one generation at a time)."""
    info = _api(server)
    image = tmp_path / "in.png"
    ui_load.make_image(image, 0)
    t0 = time.monotonic()
    results = {}

    def session(name, role, steps):
        results[name] = ui_load.run_session(server.url, len(results), role, image, info, t0, steps=steps)

    long = threading.Thread(target=session, args=("long", "cancel-running", 1000))  # minutes, were it not cancelled
    long.start()
    deadline = time.monotonic() + 120
    while not list(server.tmp.glob("sgi2v-ui-*/session-*/run-001")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the long run has begun: its folder is there
    short = threading.Thread(target=session, args=("short", "finish", 4))
    short.start()
    long.join(300)
    short.join(300)
    assert results["long"].outcome == "cancelled while running", results["long"]
    assert results["short"].outcome == "finished" and results["short"].video_sha_ok, results["short"]
    waited = results["short"].times["started"] - results["long"].times["cancelled"]
    assert 0 <= waited < 30, results  # it waited for the device, and got it when the long run was cancelled...
    log = server.log_text()
    assert log.count("a generation was cancelled: it stopped and left nothing") == 1, log  # ...which the long run gave back


def test_generations_back_to_back_leak_nothing(tmp_path):
    """The soak of ``benchmarks/ui_load.py soak`` at 7 runs: every video is its record's, open file descriptors stay
    flat, the server's folder keeps no file of a closed page, and its memory settles (it does by the second run; the
    200-run figures are in benchmarks/RESULTS.md)."""
    report = ui_load.run_soak(7, steps=4)
    assert report["failures"] == [], report["failures"]
    samples = report["samples"]
    assert len(samples) == 7
    # one descriptor leaked per run would show as 4 more over the last 4 runs
    assert max(s["fds"] for s in samples[3:]) <= samples[2]["fds"] + 3, [s["fds"] for s in samples]
    # A closed page's folder goes when the server learns that it is gone (from its heartbeat connection, within about
    # a second): the last page or two may still have theirs, no more; uploads wait in their own folders only until their
    # page uses them; every other file is an example's thumbnail.
    assert max(s["session_folders"] for s in samples) <= 3, [s["session_folders"] for s in samples]
    assert all(s["upload_folders"] <= s["session_folders"] for s in samples), samples
    assert all(s["stray_files"] == [] for s in samples), samples
    left = report["files_after_all_pages_closed"]
    assert all(f.split("/")[1] == "examples" for f in left), left  # the shared thumbnails only: no page's uploads
    rss = [s["rss_mb"] for s in samples]
    assert max(rss[3:]) <= 1.10 * rss[2], rss


def test_a_full_queue_refuses_runs_but_not_uploads_or_previews(tmp_path):
    """With the device busy and the queue full (``--queue-size 1``), a new run is refused at once with Gradio's
    message; an upload and an edit's preview from another page are still answered (only runs wait in the queue)."""
    from gradio_client import Client, handle_file
    from gradio_client.client import Status

    server = ui_load.Server(queue_size=1)
    clients = []
    try:
        info = _api(server)
        image = tmp_path / "in.png"
        ui_load.make_image(image, 0)
        drawn = ui_load.drawing(0)

        def page():
            clients.append(Client(server.url, verbose=False))
            ui_load.direct(clients[-1], "/on_upload", handle_file(str(image)), ui_load.FRAMES,
                           ui_load.WIDTH, ui_load.HEIGHT, "stretch")
            return clients[-1]

        def submit(client):
            return client.submit(*ui_load.generate_args(drawn, 1, info, steps=1000), api_name="/on_generate")

        running = submit(page())
        deadline = time.monotonic() + 120
        while running.status().code not in (Status.PROCESSING, Status.PROGRESS) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.status().code in (Status.PROCESSING, Status.PROGRESS), running.status()  # the device is taken
        waiting = submit(page())
        deadline = time.monotonic() + 60
        while waiting.status().code != Status.IN_QUEUE and time.monotonic() < deadline:
            time.sleep(0.05)  # the queue is full
        assert waiting.status().code == Status.IN_QUEUE, waiting.status()
        refused = submit(page())
        with pytest.raises(Exception, match="Queue is full"):
            refused.result(timeout=60)
        other = page()  # its upload is answered...
        preview, status = ui_load.direct(other, "/on_preview", drawn, "tiny-random", ui_load.FRAMES,
                                         ui_load.WIDTH, ui_load.HEIGHT, "stretch", 7)
        assert preview and Path(preview["path"]).stat().st_size > 0, status  # ...and so is its preview
        assert running.status().code in (Status.PROCESSING, Status.PROGRESS)  # the run went on meanwhile
        running.cancel()
        waiting.cancel()
    finally:
        for client in clients:
            client.close()
        server.stop()
