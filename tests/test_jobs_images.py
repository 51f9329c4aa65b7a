"""Nothing lost: each image of a job list is written the moment it is finished, the manifest
says which, and a job run again (its worker lost, or the list stopped) runs only the images
not written. Embedded here, and on WebUI hosts over loopback HTTP; Ray in test_jobs_ray.py."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from lib_multipass.jobs.manifest import read_images, read_manifest

BASE = {"width": 64, "height": 64, "prompt": "a fox"}


def lines(*objects) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def pixels(path) -> bytes:
    return Image.open(path).convert("RGB").tobytes()


def finals(folder) -> list:
    return sorted(folder.glob("*-final.png"))


@pytest.fixture
def home(tiny_models, monkeypatch):
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def test_rest_of_a_job_keeps_its_seeds_and_variation_seeds():
    from lib_multipass.jobs.images import rest_of
    from lib_multipass.plan import JobContext
    from lib_multipass.protocol import Job
    from lib_multipass.recipe import Base

    ctx = JobContext.from_base(Base(subseed=50, subseed_strength=0.3), "proportional")
    job = Job(ctx, seeds=[7, 8, 9, 10], names=["a", "b", "c", "d"])
    rest = rest_of(job, 2)
    assert list(rest.seeds) == [9, 10] and list(rest.names) == ["c", "d"]
    assert rest.ctx.subseed == 52  # image 3's variation seed, counted from the job's first
    assert rest_of(job, 0) is job


def test_a_killed_list_keeps_its_finished_images_and_resume_runs_only_the_rest(home, tmp_path):
    """SIGKILL to `multipass jobs` mid-job (no chance to tidy up): every image written before
    it is on disk and named in the manifest; the next run makes only the missing images, and
    the job's images equal those of a run that was never stopped."""
    recipe = {
        "base": {**BASE, "checkpoint": "tiny-toon", "steps": 8, "seed": 40, "images": 8},
        "passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}],
    }
    (tmp_path / "l.jsonl").write_text(lines({"recipe": recipe}))
    env = {**os.environ, "MULTIPASS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "lib_multipass", "jobs", "l.jsonl", "--out", "o"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = tmp_path / "o"
    end = time.monotonic() + 600
    while len(read_images(out)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < end, "no image was written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = read_images(out)
    assert read_manifest(out) == []  # the job never ended
    assert 2 <= len(before) < 8, "the job ended before the kill: make it slower"
    folder = out / before[0]["folder"]
    kept = {e["file"]: (folder / e["file"]).stat().st_mtime_ns for e in before}
    assert [e["image"] for e in before] == list(range(1, len(before) + 1))
    assert sorted(kept) == [p.name for p in finals(folder)]  # the manifest names every one

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=False)
    assert again.returncode == 0, again.stderr.decode()
    assert "1 resumed" in again.stdout.decode()
    after = read_images(out)[len(before) :]
    assert [e["image"] for e in after] == list(range(len(before) + 1, 9))  # only the rest
    assert all((folder / f).stat().st_mtime_ns == t for f, t in kept.items())  # not rewritten
    (entry,) = read_manifest(out)
    assert entry["status"] == "done" and len(entry["files"]) == 8
    assert entry["files"] == [p.name for p in finals(folder)]

    whole = subprocess.run(
        [*command[:-1], "whole"], cwd=tmp_path, env=env, capture_output=True, check=False
    )
    assert whole.returncode == 0, whole.stderr.decode()
    theirs = finals(tmp_path / "whole" / entry["folder"])
    assert [p.name for p in theirs] == entry["files"]
    assert [pixels(p) for p in theirs] == [pixels(folder / f) for f in entry["files"]]
    assert Image.open(theirs[-1]).info == Image.open(folder / entry["files"][-1]).info


def test_images_of_a_job_reach_disk_before_the_job_ends(home, tmp_path):
    """The embedded engine sends each image as its last pass ends: the first image's file
    and manifest line exist while the job is still running."""
    from lib_multipass.backends.diffusers_backend import DiffusersBackend
    from lib_multipass.cli import backend_settings, build_parser, registry
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.workers import LocalWorker

    recipe = {
        "base": {**BASE, "checkpoint": "tiny-toon", "steps": 4, "seed": 3, "images": 3},
        "passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}],
    }
    (tmp_path / "l.jsonl").write_text(lines({"recipe": recipe}))
    args = build_parser()["jobs"].parse_args([str(tmp_path / "l.jsonl")])
    backend = DiffusersBackend(**backend_settings(args, 0))
    tasks = make_tasks(read_job_list(tmp_path / "l.jsonl"), backend, default_checkpoint="")
    out = tmp_path / "out"
    seen = []

    def look(run):
        if run.busy and not seen and read_images(out):
            seen.append(finals(out / tasks[0].spec.folder))

    summary = ListRun(tasks, [LocalWorker(backend, registry(args))], out, observer=look).run()
    assert summary.done == 1 and summary.images == 3
    assert seen and seen[0], "no image was on disk while its job ran"
    assert [e["image"] for e in read_images(out)] == [1, 2, 3]


def test_a_list_writes_each_images_chain_as_run_does(home, tmp_path):
    """`multipass jobs --animation gif`: each job's images get their chain animation beside
    their finals, frame for frame those `multipass run --animation gif` writes, and the
    manifest names them."""
    from lib_multipass.cli import main

    recipe = {
        "base": {**BASE, "checkpoint": "tiny-toon", "steps": 3, "seed": 5, "images": 2},
        "passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    (tmp_path / "l.jsonl").write_text(lines({"recipe": "r.json"}))
    out, single = tmp_path / "out", tmp_path / "single"
    flags = ["--animation", "gif", "--frame-ms", "200"]
    assert main(["jobs", str(tmp_path / "l.jsonl"), "--out", str(out), *flags]) == 0
    assert main(["run", str(tmp_path / "r.json"), "--out", str(single), *flags]) == 0
    (entry,) = read_manifest(out)
    chains = ["01-5-chain.gif", "02-6-chain.gif"]
    assert entry["files"] == ["01-5-final.png", "02-6-final.png", *chains]
    for name in chains:
        mine, theirs = Image.open(out / entry["folder"] / name), Image.open(single / name)
        assert mine.n_frames == theirs.n_frames == 2  # the base, then the pass
        for frame in range(mine.n_frames):
            mine.seek(frame)
            theirs.seek(frame)
            assert mine.convert("RGB").tobytes() == theirs.convert("RGB").tobytes()
            assert mine.info.get("duration") == theirs.info.get("duration") == 200
