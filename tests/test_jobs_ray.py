"""Job lists on a real local Ray: two CPU actors, affinity, a worker killed mid-job."""

import json

import pytest
from PIL import Image

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from lib_multipass.jobs.manifest import read_images, read_manifest  # noqa: E402

BASE = {"width": 64, "height": 64, "steps": 3, "prompt": "a fox"}


def recipe(first, *then, seed=1, steps=3):
    passes = [{"checkpoint": c, "denoising_strength": 0.5} for c in then]
    return {"base": {**BASE, "checkpoint": first, "seed": seed, "steps": steps}, "passes": passes}


def write_list(folder, *jobs):
    path = folder / "l.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes seconds on two cores), on loopback."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture
def home(tiny_models, monkeypatch):
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def finals(folder):
    return sorted(folder.glob("*-final.png"))


def pixels(path):
    return Image.open(path).convert("RGB").tobytes()


def tasks_and_two_workers(listed):
    """A list's tasks and two Ray workers with `multipass jobs`' settings, both started."""
    from lib_multipass.backends.diffusers_backend import DiffusersBackend
    from lib_multipass.cli import backend_settings, build_parser, registry_settings
    from lib_multipass.jobs.driver import make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.ray_workers import ray_workers

    args = build_parser()["jobs"].parse_args([str(listed)])
    settings = backend_settings(args, 200)
    tasks = make_tasks(
        read_job_list(listed), DiffusersBackend(**settings), default_checkpoint="tiny-toon"
    )
    workers = ray_workers(2, settings, registry_settings(args))
    ray.get([w.actor.pid.remote() for w in workers])
    return tasks, workers


def test_a_list_on_two_ray_workers_gives_the_images_of_run(local_ray, home, tmp_path):
    """Each job's images equal `multipass run`'s, and each worker read each checkpoint it
    needed from disk once: affinity kept each checkpoint's jobs with the worker holding it."""
    from lib_multipass.cli import main

    jobs = [
        {"recipe": recipe("tiny-toon", "tiny-photo"), "seed": 3, "images": 2},
        {"recipe": recipe("tiny-photo"), "seed": 4},
        {"recipe": recipe("tiny-toon"), "seed": 5},
        {"recipe": recipe("tiny-photo"), "seed": 6},
        {"recipe": recipe("tiny-toon"), "seed": 7},
    ]
    listed = write_list(tmp_path, *jobs)
    out = tmp_path / "out"
    code = main(["jobs", str(listed), "--out", str(out), "--engine", "ray", "--workers", "2"])
    assert code == 0
    entries = {e["job"]: e for e in read_manifest(out)}
    assert sorted(entries) == [1, 2, 3, 4, 5]
    assert {e["worker"] for e in entries.values()} == {"ray-1", "ray-2"}  # both worked
    for number, job in enumerate(jobs, 1):
        (tmp_path / f"r{number}.json").write_text(json.dumps(job["recipe"]))
        single = tmp_path / f"single-{number}"
        args = ["run", str(tmp_path / f"r{number}.json"), "--seed", str(job["seed"])]
        # a Ray actor of one CPU slot computes on one thread (Ray sets OMP_NUM_THREADS), and
        # torch's CPU kernels split their sums by thread: `run` on as many threads
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main([*args, "--images", str(job.get("images", 1)), "--out", str(single)]) == 0
        finally:
            torch.set_num_threads(threads)
        mine, theirs = finals(out / entries[number]["folder"]), finals(single)
        assert [p.name for p in mine] == [p.name for p in theirs]
        assert [pixels(p) for p in mine] == [pixels(p) for p in theirs], number
    for worker in ("ray-1", "ray-2"):
        ran = [e for e in entries.values() if e["worker"] == worker]
        needed = {c for e in ran for c in e["switches"]}
        loads: dict[str, int] = {}
        for e in ran:
            for name, count in e["loads"].items():
                loads[name] = loads.get(name, 0) + count
        assert loads == dict.fromkeys(needed, 1), (worker, ran)


def test_a_worker_killed_mid_job_loses_nothing(local_ray, home, tmp_path):
    """Ray restarts the killed actor; its job goes to a worker and runs again from the start;
    every job ends done, and the manifest tells the retry."""
    from lib_multipass.jobs.driver import ListRun

    listed = write_list(
        tmp_path, {"recipe": recipe("tiny-toon", "tiny-photo", steps=16), "seeds": "1-4"}
    )
    tasks, workers = tasks_and_two_workers(listed)
    killed = []

    def kill_once_mid_job(run):
        for w in run.workers:
            if killed or w.name not in run.busy:
                continue
            _where, done, total = ray.get(w.actor.progress.remote(), timeout=30)  # now
            # early in the job: far from its end by the time the kill lands
            if 1 <= done <= total * 2 // 3:
                killed.append((w.name, run.busy[w.name].spec.number))
                ray.kill(w.actor, no_restart=False)

    out = tmp_path / "out"
    summary = ListRun(tasks, workers, out, observer=kill_once_mid_job).run()
    assert killed, "the actor was never seen mid-job"
    assert (summary.done, summary.failed, summary.retries) == (4, 0, 1)
    entries = {e["job"]: e for e in read_manifest(out)}
    assert sorted(entries) == [1, 2, 3, 4]
    assert all(
        e["status"] == "done" and len(finals(out / e["folder"])) == 1 for e in entries.values()
    )
    name, number = killed[0]
    retried = entries[number]
    assert retried["attempts"] == 2 and len(retried["retries"]) == 1
    assert retried["retries"][0].startswith(f"attempt 1 on {name}: actor died")
    assert all(e["attempts"] == 1 for n, e in entries.items() if n != number)
    for w in workers:
        ray.kill(w.actor)


def test_cancel_stops_every_ray_worker_after_its_step(local_ray, home, tmp_path):
    """Ctrl-C with Ray workers: each actor stops its job after the current step; both jobs
    come back cancelled with what they finished, and the waiting jobs are left for later."""
    from lib_multipass.jobs.driver import ListRun

    slow = recipe("tiny-toon", "tiny-photo", steps=12)
    listed = write_list(tmp_path, {"recipe": slow, "seeds": [1, 3, 5, 7], "images": 2})
    tasks, workers = tasks_and_two_workers(listed)  # both up: neither races through a job
    asked = []

    def cancel_when_both_sample(run):
        for w in run.workers:
            w.status()
        if not asked and len(run.busy) == 2 and all(w.progress()[0] >= 1 for w in run.workers):
            asked.append(True)
            run.cancel()

    summary = ListRun(tasks, workers, tmp_path / "out", observer=cancel_when_both_sample).run()
    assert asked
    assert (summary.done, summary.cancelled, summary.not_started) == (0, 2, 2)
    entries = read_manifest(tmp_path / "out")
    assert sorted(e["status"] for e in entries) == ["cancelled", "cancelled"]
    assert all("cancelled" in e["reason"] for e in entries)
    for w in workers:
        ray.kill(w.actor)


def test_a_killed_actor_keeps_its_sent_images_and_the_retry_makes_only_the_rest(
    local_ray, home, tmp_path
):
    """Each image comes back from the actor as it is made (a Ray generator) and is written at
    once; the actor killed after two images keeps them, and the job's next attempt makes only
    the rest, with the images `multipass run` makes: every image written once."""
    from lib_multipass.cli import main
    from lib_multipass.jobs.driver import ListRun

    job = recipe("tiny-toon", seed=20, steps=6)
    listed = write_list(tmp_path, {"recipe": job, "images": 6})
    tasks, workers = tasks_and_two_workers(listed)
    out = tmp_path / "out"
    killed = []

    def kill_after_two_images(run):
        for w in run.workers:
            task = run.busy.get(w.name)
            if not killed and task is not None and len(task.written) >= 2:
                folder = out / task.spec.folder
                killed.append(
                    (w.name, {f: (folder / f).stat().st_mtime_ns for f in task.written.values()})
                )
                ray.kill(w.actor, no_restart=False)

    summary = ListRun(tasks, workers, out, observer=kill_after_two_images).run()
    assert killed, "the job ended before two of its images came back"
    assert (summary.done, summary.retries) == (1, 1)
    name, kept = killed[0]
    images = read_images(out)
    assert sorted(e["image"] for e in images) == [1, 2, 3, 4, 5, 6]  # each written once
    first = [e for e in images if e["attempt"] == 1]
    assert len(first) >= 2 and {e["worker"] for e in first} == {name}
    assert [e["image"] for e in images if e["attempt"] == 2] == list(range(len(first) + 1, 7))
    (entry,) = read_manifest(out)
    assert entry["status"] == "done" and entry["attempts"] == 2
    assert f"{len(first)} of 6 images were written" in entry["retries"][0]
    folder = out / entry["folder"]
    assert all((folder / f).stat().st_mtime_ns == t for f, t in kept.items())
    (tmp_path / "r.json").write_text(json.dumps(job))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the actor computes (see the first test)
    try:
        single = tmp_path / "single"
        assert main(["run", str(tmp_path / "r.json"), "--images", "6", "--out", str(single)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert entry["files"] == [p.name for p in finals(single)]
    assert [pixels(folder / f) for f in entry["files"]] == [pixels(p) for p in finals(single)]
    for w in workers:
        ray.kill(w.actor)
