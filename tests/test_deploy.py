"""Operations end to end: a real Prefect server (SQLite), deploy/setup.sh, a process worker, and
`prefect deployment run 'colorize-archive/on-demand' --watch`, as README tells an operator.
Every process started here is stopped (the worker ignores SIGTERM: it gets SIGKILL)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from colorize_core.provenance import ProvenanceStore
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def prefect_server(tmp_path):  # noqa: ANN001, ANN201
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"Prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield env
    finally:
        _stop(server)
        log.close()


def test_on_demand_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    env = {**prefect_server, "COLORIZE_DB_URL": f"sqlite:///{tmp_path}/provenance.db", "COLORIZE_GPUS": "1",
           "COLORIZE_NIGHTLY_SOURCE": str(tmp_path / "nightly-source"), "COLORIZE_NIGHTLY_DEST": str(tmp_path / "nd")}
    setup = subprocess.run(["bash", str(ROOT / "deploy" / "setup.sh")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    limits = subprocess.run([str(BIN / "prefect"), "concurrency-limit", "inspect", "gpu"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert limits.returncode == 0 and "gpu" in limits.stdout
    listed = subprocess.run([str(BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True, text=True,
                            timeout=60)
    for name in ("colorize-archive/on-demand", "colorize-archive/nightly", "train-colorizer/on-demand",
                 "evaluate-colorizer/on-demand", "build-dataset/on-demand", "verify-fixity/weekly",
                 "verify-fixity/on-demand", "relocate-dest/on-demand",
                 "relocate-source/on-demand", "record-review/on-demand"):
        assert name in listed.stdout, listed.stdout
    nightly = json.loads(subprocess.run([str(BIN / "prefect"), "deployment", "inspect", "colorize-archive/nightly",
                                         "--output", "json"], env=env, capture_output=True, text=True, timeout=60).stdout)
    assert nightly["global_concurrency_limit"]["limit"] == 1   # one night's job at a time; the next one waits
    assert nightly["concurrency_options"]["collision_strategy"] == "ENQUEUE"

    src, dest = tmp_path / "source", tmp_path / "dest"
    shutil.copytree(SAMPLES / "animals", src)
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "colorize", "--limit", "1"],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "colorize-archive/on-demand",
                              "--param", f"source={src}", "--param", f"dest={dest}", "--watch"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
        assert "Completed" in run.stdout
        # A source that does not exist: the run fails with a clear message, nothing is written.
        bad = subprocess.run([str(BIN / "prefect"), "deployment", "run", "colorize-archive/on-demand",
                              "--param", f"source={tmp_path / 'missing'}", "--param", f"dest={tmp_path / 'd2'}",
                              "--watch"], env=env, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0
        # The fixity check of what the first run wrote: Completed, then Failed once an output is gone.
        check = [str(BIN / "prefect"), "deployment", "run", "verify-fixity/on-demand", "--param", f"dest={dest}",
                 "--watch"]
        intact = subprocess.run(check, env=env, capture_output=True, text=True, timeout=300)
        assert intact.returncode == 0 and "Completed" in intact.stdout, intact.stdout[-3000:]
        (dest / "chelsea-sepia.jpg").unlink()
        damaged = subprocess.run(check, env=env, capture_output=True, text=True, timeout=300)
        assert damaged.returncode != 0 and "Failed" in damaged.stdout, damaged.stdout[-3000:]
        # DEST copied elsewhere (the damaged output with it, gone), and the records moved there.
        shutil.copytree(dest, tmp_path / "moved")
        moved = subprocess.run([str(BIN / "prefect"), "deployment", "run", "relocate-dest/on-demand", "--param",
                                f"old={dest}", "--param", f"new={tmp_path / 'moved'}", "--param", "accept_damaged=true",
                                "--watch"], env=env, capture_output=True, text=True, timeout=300)
        assert moved.returncode == 0 and "Completed" in moved.stdout, moved.stdout[-3000:]
        # A curator approves, from Prefect, the job's items that need no attention: not the damaged one.
        job_id = ProvenanceStore(env["COLORIZE_DB_URL"]).jobs()[0]["id"]
        review = subprocess.run([str(BIN / "prefect"), "deployment", "run", "record-review/on-demand", "--param",
                                 "decision=approved", "--param", "by=Ann Archivist", "--param", f"job_id={job_id}",
                                 "--watch"], env=env, capture_output=True, text=True, timeout=300)
        assert review.returncode == 0 and "Completed" in review.stdout, review.stdout[-3000:]
    finally:
        _stop(worker)
        log.close()
    assert "does not exist" in (tmp_path / "worker.log").read_text()
    assert f"MISSING {dest / 'chelsea-sepia.jpg'}" in (tmp_path / "worker.log").read_text()
    assert not (tmp_path / "d2").exists()
    store = ProvenanceStore(env["COLORIZE_DB_URL"])
    with store.session() as s:
        from sqlalchemy import select

        from colorize_core.provenance import Event, Item, Job

        jobs = s.scalars(select(Job)).all()
        assert len(jobs) == 1 and jobs[0].status == "completed" and jobs[0].flow_run_id
        items = s.scalars(select(Item)).all()
        assert sorted(i.rel_path for i in items) == ["chelsea cat.png", "chelsea-sepia.jpg"]
        assert all(i.status == "done" for i in items)
        assert {i.dest for i in items} == {str(tmp_path / "moved")} and jobs[0].dest == str(tmp_path / "moved")
        approved = s.scalars(select(Item.rel_path).join(Event, Event.item_id == Item.id)
                             .where(Event.type == "review", Event.agent == "person:Ann Archivist")).all()
        assert approved == ["chelsea cat.png"]   # chelsea-sepia.jpg is damaged: left to decide on its own
    assert (dest / "chelsea cat.png").is_file() and (dest / "manifest.html").is_file()
