"""`--ray-address`: a job list on an existing Ray cluster, a real one started here with
`ray start --head` on loopback, gives the images of the embedded engine."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from lib_multipass.jobs.manifest import read_manifest  # noqa: E402

BASE = {"width": 64, "height": 64, "steps": 3, "prompt": "a fox"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head with 2 CPU slots in processes of its own (`ray start --head --block`, in a
    process group of its own, ended by its id at teardown: `ray stop` would end every Ray of
    the machine's user, not just this one). Ray 2.60 turns token authentication on for a
    cluster `ray start` makes; this one, for this test only, has it off (RAY_AUTH_MODE=disabled),
    so the driver needs no token. Ray binds its servers to every interface and names the node
    by the machine's address whatever --node-ip-address says (services.resolve_ip_for_localhost);
    the test reaches it at 127.0.0.1."""
    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    temp = tmp_path_factory.mktemp("rayc")
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        "--block",
    ]
    log = temp / "ray-start.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with open(log, "wb") as out:
        head = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    address = f"127.0.0.1:{port}"
    end = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text(errors="replace"):  # every process up
        if head.poll() is not None:
            pytest.skip(f"`ray start --head` cannot run here: {log.read_text()[-400:]}")
        if time.monotonic() > end:
            os.killpg(head.pid, signal.SIGKILL)
            pytest.skip("`ray start --head` did not start within 180 s")
        time.sleep(0.5)
    yield address
    head.send_signal(signal.SIGTERM)  # --block: it ends the processes it started
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # whatever of the group is left


@pytest.fixture
def home(tiny_models, monkeypatch):
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def pixels(path) -> bytes:
    return Image.open(path).convert("RGB").tobytes()


def test_a_list_on_an_existing_cluster_gives_the_images_of_the_embedded_engine(
    cluster, home, tmp_path
):
    from lib_multipass.cli import main

    jobs = [
        {
            "recipe": {
                "base": {**BASE, "checkpoint": "tiny-toon", "seed": 3},
                "passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}],
            },
            "images": 2,
        },
        {"recipe": {"base": {**BASE, "checkpoint": "tiny-photo", "seed": 8}, "passes": []}},
    ]
    listed = tmp_path / "l.jsonl"
    listed.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    on_cluster = tmp_path / "cluster"
    # the command as a user runs it, in a process of its own
    command = [sys.executable, "-m", "lib_multipass", "jobs", str(listed), "--engine", "ray"]
    command += ["--ray-address", cluster, "--workers", "2", "--out", str(on_cluster)]
    # as the cluster: no token (a local ray.init earlier in this process set RAY_AUTH_MODE=token)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    entries = {e["job"]: e for e in read_manifest(on_cluster)}
    assert sorted(entries) == [1, 2] and {e["status"] for e in entries.values()} == {"done"}
    assert {e["worker"] for e in entries.values()} <= {"ray-1", "ray-2"}
    embedded = tmp_path / "embedded"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a CPU actor computes (Ray sets OMP_NUM_THREADS to its slot)
    try:
        assert main(["jobs", str(listed), "--out", str(embedded)]) == 0
    finally:
        torch.set_num_threads(threads)
    for entry in read_manifest(embedded):
        mine = entries[entry["job"]]
        assert mine["files"] == entry["files"] and len(entry["files"]) >= 1
        for name in entry["files"]:
            assert pixels(on_cluster / mine["folder"] / name) == pixels(
                embedded / entry["folder"] / name
            )
