"""The ``colorize`` command as a subprocess: outputs and exit statuses (0 ok, 1 items failed, 2 usage)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SAMPLES, bad_inputs, colour_photo_bytes, ffmpeg

pytestmark = pytest.mark.slow
COLORIZE = [sys.executable, "-m", "colorize_cli.main"]


# COLORIZE for a run a test interrupts with Ctrl-C: Ctrl-C reaches it as at a terminal, however the
# tests were started (a shell without job control starts a background command with SIGINT ignored,
# and a child inherits that: Python then never raises KeyboardInterrupt).
INTERRUPTIBLE = [sys.executable, "-c", ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                        "runpy.run_module('colorize_cli.main', run_name='__main__', alter_sys=True)")]


def colorize(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*COLORIZE, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_image_colorizes_and_keeps_size(tmp_path):
    out = tmp_path / "out" / "astronaut.png"
    r = colorize("image", str(SAMPLES / "portraits/astronaut.jpg"), str(out))
    assert r.returncode == 0, r.stderr
    im = Image.open(out)
    assert im.mode == "RGB" and im.size == Image.open(SAMPLES / "portraits/astronaut.jpg").size[::-1]
    assert b"compositeWithTrainedAlgorithmicMedia" in im.info["xmp"]
    r = colorize("image", str(SAMPLES / "portraits/astronaut.jpg"), str(out))  # OUT exists
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = colorize("image", "--refine", "none", "--overwrite", str(SAMPLES / "portraits/astronaut.jpg"), str(out))
    assert r.returncode == 0, r.stderr


def test_an_out_written_by_something_else_meanwhile_is_never_replaced(tmp_path):
    """`colorize image` and `video` check OUT at their start; another run to the same OUT may
    finish first. Without --overwrite, its file stays, and this run's result is kept and named."""
    from colorize_cli.main import ItemFailed, _beside, _place

    out = tmp_path / "o.jpg"
    for data, overwrite in ((b"first", False), (b"second", False), (b"third", True)):
        done = _beside(out)
        assert done.parent == tmp_path and done.name.startswith(".o.colorize-") and done.suffix == ".jpg"
        done.write_bytes(data)
        if data == b"second":
            with pytest.raises(ItemFailed, match="o.jpg was written by something else while this ran") as err:
                _place(done, out, overwrite)
            kept = tmp_path / done.name.lstrip(".")
            assert kept.read_bytes() == b"second" and f"this run's result is {kept}" in err.value.message
        else:
            _place(done, out, overwrite)
        assert out.read_bytes() == (b"third" if overwrite else b"first")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o.jpg", kept.name])   # no hidden file left


def test_image_failures_and_usage_errors_have_distinct_statuses(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(bad_inputs()["notes.jpg"])
    r = colorize("image", str(bad), str(tmp_path / "o.jpg"))
    assert r.returncode == 1 and "not a recognised image" in r.stderr
    colour = tmp_path / "colour.jpg"
    colour.write_bytes(colour_photo_bytes())
    r = colorize("image", str(colour), str(tmp_path / "c.jpg"))
    assert r.returncode == 1 and "already in colour" in r.stderr
    assert colorize("image", "--include-colour", str(colour), str(tmp_path / "c.jpg")).returncode == 0
    r = colorize("image", str(SAMPLES / "portraits/astronaut.jpg"), str(tmp_path / "o.bmp"))
    assert r.returncode == 2 and "OUT must end in" in r.stderr
    r = colorize("image", "--model", "nope", str(SAMPLES / "portraits/astronaut.jpg"), str(tmp_path / "o.jpg"))
    assert r.returncode == 2 and "unknown model" in r.stderr
    assert colorize("image", "--refine", "magic", "a.jpg", "b.jpg").returncode == 2


def test_run_exit_status_is_1_when_some_items_failed(prefect_api, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SAMPLES / "animals", src)
    (src / "broken.jpg").write_bytes(bad_inputs()["truncated.jpg"])
    r = colorize("run", str(src), str(tmp_path / "dest"), "--db", f"sqlite:///{tmp_path}/p.db", "--json",
                 env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 1}


def test_run_usage_errors(prefect_api, tmp_path):
    r = colorize("run", str(tmp_path / "missing"), str(tmp_path / "d"), env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = colorize("run", "ftp://x/y", str(tmp_path / "d"), env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "scheme" in r.stderr
    r = colorize("run", str(SAMPLES), str(SAMPLES) + "/", env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "is the source" in r.stderr
    r = colorize("run", str(SAMPLES), str(tmp_path / "d"), "--task-runner", "ray", env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "--task-runner" in r.stderr
    r = colorize("run", str(SAMPLES), str(tmp_path / "d"), "--film-renditions", ".avi", env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "renditions" in r.stderr
    r = colorize("run", str(SAMPLES), str(tmp_path / "d"), "--sequence-rate", "0", env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "sequence_rate: a frame rate is a positive number" in r.stderr
    r = colorize("run", env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 2 and "SOURCE and DEST" in r.stderr


def test_a_second_run_on_a_dest_is_refused_until_the_first_ends_or_its_lease_runs_out(prefect_api, tmp_path):
    from colorize_core.provenance import ProvenanceStore, utcnow

    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    env = {"PREFECT_API_URL": prefect_api, "COLORIZE_LEASE_SECONDS": "20"}   # renewed every 2 s
    first = subprocess.Popen([*COLORIZE, "run", str(SAMPLES), str(dest), "--db", db], env={**os.environ, **env},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((tmp_path / "p.db").exists() and (ProvenanceStore(db).dest_lease(str(dest)) or {}).get("renewals")):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never renewed its lease"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)     # the first job dies mid-work, holding DEST
        first.wait()
    store = ProvenanceStore(db)
    held = store.dest_lease(str(dest))
    assert store.job(held["job_id"]).status == "running"
    r = colorize("run", str(SAMPLES), str(dest), "--db", db, env=env)
    assert r.returncode == 1 and f"is being written by job {held['job_id']}" in r.stderr, r.stderr[-2000:]
    assert f"--take-over {held['job_id']}" in r.stderr and len(store.job_items(held["job_id"])) < 6
    r = colorize("jobs", "--db", db, env=env)   # as far as anyone can tell yet, it is running
    assert r.returncode == 0 and f"{held['job_id']}" in r.stdout and "running (host " in r.stdout, r.stderr
    # Once the lease has gone 20 s without renewal, the next run takes DEST over and finishes the work.
    time.sleep(max(0.0, 20.5 - (utcnow() - store.dest_lease(str(dest))["renewed_at"]).total_seconds()))
    r = colorize("jobs", "--db", db, env=env)
    assert "stopped? (host " in r.stdout and "lease has not been renewed for" in r.stdout, r.stdout
    r = colorize("run", str(SAMPLES), str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["counts"]["done"] + summary["counts"]["skipped"] == 6 and summary["counts"]["failed"] == 0
    assert f"took over {dest} from job {held['job_id']}" in r.stdout + r.stderr
    assert store.job(held["job_id"]).status == "crashed" and store.dest_lease(str(dest)) is None
    r = colorize("jobs", "--db", db, "--dest", str(dest), "--json", env=env)
    listed = json.loads(r.stdout)
    assert [(j["id"], j["activity"]) for j in listed] == [(summary["job_id"], "completed"), (held["job_id"], "crashed")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["cancelled-by-prefect", "ctrl-c"])
def test_a_run_stopped_by_a_signal_gives_its_dest_back_and_is_recorded_cancelled(prefect_api, tmp_path, sig):
    """Prefect's worker cancels a flow run with SIGTERM; a person at the terminal presses Ctrl-C."""
    from colorize_core.provenance import ProvenanceStore

    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    run = subprocess.Popen([*INTERRUPTIBLE, "run", str(SAMPLES), str(dest), "--db", db],
                           env={**os.environ, "PREFECT_API_URL": prefect_api}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    def started() -> str | None:   # the job holds DEST and has its row: the signal comes at its very start
        lease = ProvenanceStore(db).dest_lease(str(dest)) if (tmp_path / "p.db").exists() else None
        return lease["job_id"] if lease and ProvenanceStore(db).job(lease["job_id"]) else None

    deadline = time.monotonic() + 120
    while not (job_id := started()):
        assert run.poll() is None and time.monotonic() < deadline, "the run never started its job"
        time.sleep(0.05)
    run.send_signal(sig)
    out, _ = run.communicate(timeout=240)
    assert run.returncode != 0, out[-2000:]
    store = ProvenanceStore(db)
    assert store.job(job_id).status == "cancelled" and store.dest_lease(str(dest)) is None, out[-2000:]
    if "this process has not exited; exiting now" in out:   # what held it up, for whoever reads the run's log
        warnings.warn(f"the stopped run needed its exit deadline: {out[out.index('this process has not'):]}",
                      stacklevel=1)


def test_a_stopped_flow_exits_by_its_deadline_and_names_what_held_it_up():
    """Whatever keeps the process from exiting once a flow has stopped (here a thread that never
    ends), it exits COLORIZE_EXIT_GRACE_SECONDS later, with every thread's stack on stderr."""
    code = ("import threading\n"
            "from colorize_cli.main import exits_once_stopped\n"
            "def never_ends(): threading.Event().wait()\n"
            "threading.Thread(target=never_ends).start()\n"
            "with exits_once_stopped():\n"
            "    raise {}\n")
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code.format("KeyboardInterrupt")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "COLORIZE_EXIT_GRACE_SECONDS": "3"})
    assert r.returncode == 1 and 3 <= time.monotonic() - started < 60, r.stderr[-3000:]
    assert "the flow stopped 3 s ago and this process has not exited; exiting now" in r.stderr
    assert "in never_ends" in r.stderr and "KeyboardInterrupt" in r.stderr   # the stuck thread, and why it stopped
    # Only a stop starts the deadline: an error, or an exit, leaves the process to end as it would.
    r = subprocess.run([sys.executable, "-c", code.format("SystemExit(3)").replace(
        "threading.Thread(target=never_ends).start()\n", "")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLORIZE_EXIT_GRACE_SECONDS": "3"})
    assert r.returncode == 3 and "exiting now" not in r.stderr, r.stderr


def test_ctrl_c_during_a_shot_stops_it_within_seconds_and_nothing_is_written_after(prefect_api, tmp_path):
    """The shot's task checks its job between frames: it stops there, its segments neither put
    into DEST nor recorded, before the job gives DEST back; the process does not wait for the
    film's end."""
    from sqlalchemy import select

    from colorize_core.provenance import ProvenanceStore, Shot

    src, dest, db, tmp = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db", tmp_path / "tmp"
    src.mkdir(), tmp.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=24:duration=40", "-vf", "format=gray",
           "-c:v", "libx264", str(src / "reel.mp4"))   # 960 frames, one shot: some 30 s of work or more
    run = subprocess.Popen([*INTERRUPTIBLE, "run", str(src), str(dest), "--db", db],
                           env={**os.environ, "PREFECT_API_URL": prefect_api, "TMPDIR": str(tmp)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp.glob("colorize-shot-*/.colorize-tmp-*")):   # the shot is being encoded
        assert run.poll() is None and time.monotonic() < deadline, "the shot never started"
        time.sleep(0.1)
    time.sleep(1)
    signalled = time.monotonic()
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=240)
    stopped_in = time.monotonic() - signalled
    assert run.returncode != 0 and re.search(r"waiting up to 60 s for \d running task\(s\) to stop", out), out[-3000:]
    assert "colorize-shot" in out and "JobStoppedError" in out, out[-3000:]
    assert stopped_in < 20, f"{stopped_in:.0f} s from Ctrl-C to exit\n{out[-3000:]}"
    store = ProvenanceStore(db)
    job = store.jobs(1)[0]
    assert job["status"] == "cancelled" and store.dest_lease(str(dest)) is None
    with store.session() as s:
        assert s.scalars(select(Shot)).all() == []          # the shot is not recorded, done or failed
    assert not [p for p in dest.rglob("*") if p.is_file()]    # no segment went into DEST
    assert not list(tmp.glob("colorize-shot-*"))              # and its work folder is gone


def test_a_job_killed_mid_shot_leaves_its_work_folder_and_the_next_run_removes_it(prefect_api, tmp_path):
    """SIGKILL (or the kernel's out-of-memory killer) gives no chance to clean up: the shot's
    segments stay in the temporary folder until the next run on that host removes them."""
    from colorize_core.provenance import ProvenanceStore

    src, dest, db, tmp = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db", tmp_path / "tmp"
    src.mkdir(), tmp.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=24:duration=12", "-vf", "format=gray",
           "-c:v", "libx264", str(src / "reel.mp4"))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "TMPDIR": str(tmp)}
    log = tmp_path / "first.log"
    with log.open("w") as out:
        run = subprocess.Popen([*COLORIZE, "run", str(src), str(dest), "--db", db], env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)

    def encoded() -> int:   # bytes the shot's encoders have written so far (they start empty)
        return sum(p.stat().st_size for p in tmp.glob("colorize-shot-*/.colorize-tmp-*") if p.exists())

    try:
        deadline = time.monotonic() + 180
        while not encoded():   # the shot is being encoded, and has written some of its segment
            assert run.poll() is None and time.monotonic() < deadline, f"the shot never started\n{log.read_text()}"
            time.sleep(0.1)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    [left] = tmp.glob("colorize-shot-*")
    assert left.name.startswith(f"colorize-shot-{run.pid}@"), log.read_text()[-3000:]
    job = ProvenanceStore(db).dest_lease(str(dest))["job_id"]
    r = subprocess.run([*COLORIZE, "run", str(src), str(dest), "--db", db, "--take-over", job], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "1 done, 0 skipped, 0 failed" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"removed {left} (" in r.stdout + r.stderr and "no longer runs (killed mid-work)" in r.stdout + r.stderr
    assert list(tmp.iterdir()) == []


def test_jobs_tell_a_running_job_from_one_that_stopped_without_finishing():
    from datetime import timedelta

    from colorize_cli.main import _activity
    from colorize_core.provenance import utcnow

    now = utcnow()
    lease = {"holder": {"host": "scan-1", "pid": 7, "flow_run": "f"}, "renewed_at": now - timedelta(seconds=12)}
    assert _activity({"status": "completed", "lease": None}, now) == "completed"
    running = "running (host scan-1 pid 7, lease renewed 12 s ago)"
    assert _activity({"status": "running", "lease": lease}, now) == running
    assert _activity({"status": "running", "lease": {**lease, "renewed_at": now - timedelta(seconds=400)}}, now) == (
        "stopped? (host scan-1 pid 7) its lease has not been renewed for 400 s; the next job on DEST takes it over")
    assert _activity({"status": "running", "lease": None}, now).startswith("running? it holds no lease on DEST")


def test_sample_command_runs_on_prefects_ephemeral_api_with_embedded_defaults(tmp_path):
    """README's first command: defaults only (SQLite under ./var, ephemeral Prefect API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "COLORIZE_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    r = subprocess.run([*COLORIZE, "run", str(SAMPLES), "var/colour"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "6 done, 0 skipped, 0 failed" in r.stdout
    assert (tmp_path / "var" / "provenance.db").is_file()
    assert (tmp_path / "var" / "colour" / "manifest.html").is_file()
    assert (tmp_path / "var" / "colour" / "portraits" / "astronaut.jpg").is_file()
    assert (tmp_path / "var" / "colour" / "film" / "two shots.mkv").is_file()
    assert (tmp_path / "var" / "colour" / "film" / "two shots.mp4").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    colour = tmp_path / "var" / "colour"
    modes = {p.relative_to(colour).as_posix(): p.stat().st_mode & 0o777 for p in colour.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes   # readable by whoever publishes DEST, as plain files are


def test_commands_that_run_flows_give_prefects_ephemeral_server_time_to_start(monkeypatch):
    """The ephemeral API server's own 20 s were not enough beside a training run on 2 cores."""
    from prefect.settings import Settings

    from colorize_cli.main import prefect_defaults

    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    prefect_defaults()
    assert Settings().server.ephemeral.startup_timeout_seconds == 120
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")  # the operator's choice wins
    prefect_defaults()
    assert Settings().server.ephemeral.startup_timeout_seconds == 45


def test_a_finished_flow_whose_final_state_the_api_answered_too_late_still_gives_its_summary(
        prefect_api, tmp_path, monkeypatch):
    """The API commits a run's final state but answers after the client's timeout (a server stalled
    on its SQLite lock); the client sends it again and the API rejects the duplicate, answering
    with the state it holds, which carries no result. `run` and `verify` still print what the
    flow found, with their own exit statuses (CI once failed here with "State data is missing")."""
    import httpx
    from click.testing import CliRunner

    from colorize_cli.main import cli
    from tests.conftest import small_archive

    send, lost, answers = httpx.Client.send, set(), []

    def answered_too_late(self, request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        response = send(self, request, *args, **kwargs)
        if request.method == "POST" and re.fullmatch(r".*/flow_runs/[^/]+/set_state", request.url.path):
            state = json.loads(request.content)["state"]
            if state["type"] in ("COMPLETED", "FAILED"):
                transition = state["state_details"]["transition_id"]
                if transition not in lost:   # committed; its answer never arrives, and Prefect sends it again
                    lost.add(transition)
                    raise httpx.ReadTimeout("the API answered after the client's timeout", request=request)
                answers.append(response.json()["status"])
        return response

    monkeypatch.setattr(httpx.Client, "send", answered_too_late)
    src, dest, db = small_archive(tmp_path / "src", "animals"), tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    runner = CliRunner()
    r = runner.invoke(cli, ["run", str(src), str(dest), "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["status"] == "completed" and summary["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    (dest / "animals" / "chelsea-sepia.jpg").unlink()   # damage: verify finds it and exits 1, with its summary
    r = runner.invoke(cli, ["verify", str(dest), "--db", db, "--json"])
    assert r.exit_code == 1, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert [(p["status"], Path(p["uri"]).name) for p in summary["problems"]] == [("missing", "chelsea-sepia.jpg")]
    assert answers == ["REJECT", "REJECT"]   # both commands got the API's copy of their final state
