"""WebUI hosts as workers: job lists over real HTTP on loopback to stand-in hosts that run the
real Multipass script on the thin stand-in of the WebUI's `modules`."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from PIL import Image

from lib_multipass.infotext import parse_params_line
from lib_multipass.jobs.manifest import read_manifest

BASE = {"width": 64, "height": 64, "steps": 4, "prompt": "a castle", "checkpoint": "toon"}
TWO_PASSES = {
    "base": BASE,
    "passes": [
        {"checkpoint": "photo", "denoising_strength": 0.5},
        {"denoising_strength": 0.3, "prompt": "detailed", "prompt_mode": "append"},
    ],
}


class Host:
    """A stand-in WebUI in its own process, listening on 127.0.0.1."""

    def __init__(self, models, flavour="a1111", delay=0.0, without=(), progress="ok"):
        program = [sys.executable, str(ROOT / "tests" / "webui_host.py"), str(models)]
        program += [f"--without={name}" for name in without]
        self.log = Path(str(models) + "-requests.jsonl")
        program += ["--progress", progress, "--log", str(self.log)]
        self.process = subprocess.Popen(
            [*program, "--flavour", flavour, "--delay", str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("port "), line
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def requests(self):
        """Every request the host was sent, in order (images as sizes and digests)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def hosts(tmp_path):
    made = []

    def make(flavour="a1111", delay=0.0, without=(), progress="ok"):
        made.append(Host(tmp_path / f"host-{len(made)}", flavour, delay, without, progress))
        return made[-1]

    yield make
    for host in made:
        host.kill()


def write_list(folder, *jobs):
    path = folder / "l.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


@pytest.mark.parametrize("flavour", ["a1111", "neo"])
def test_jobs_run_on_a_webui_host_and_come_back_with_infotext(hosts, tmp_path, flavour):
    from lib_multipass.cli import main

    host = hosts(flavour)
    listed = write_list(
        tmp_path,
        {"recipe": TWO_PASSES, "seed": 100, "images": 2},
        {"recipe": TWO_PASSES, "prompts": ["an owl", "a fox"], "seed": 7},
        {"recipe": {"base": BASE, "passes": [{"sampler": "nope"}]}},
    )
    out = tmp_path / "out"
    assert main(["jobs", str(listed), "--out", str(out), "--webui-url", host.url]) == 1
    entries = {e["job"]: e for e in read_manifest(out)}
    assert [entries[n]["status"] for n in (1, 2, 3, 4)] == ["done", "done", "done", "failed"]
    # a recipe the host cannot run: its 422, named, and the other jobs went on
    assert "pass 1, field 'sampler': got 'nope'" in entries[4]["reason"]
    assert entries[1]["worker"] == host.url.removeprefix("http://")
    first = sorted((out / entries[1]["folder"]).glob("*-final.png"))
    assert [p.name for p in first] == ["01-100-final.png", "02-101-final.png"]
    for number, seed, prompt in ((1, 101, "a castle"), (3, 7, "a fox")):
        finals = sorted((out / entries[number]["folder"]).glob("*-final.png"))
        text = Image.open(finals[-1]).info["parameters"]
        params = parse_params_line(text.splitlines()[-1])
        assert text.startswith(prompt)
        assert params["Seed"] == str(seed) and params["Multipass passes"] == "2"
        assert params["Multipass 1 checkpoint"].startswith("photo")


def test_a_host_that_dies_mid_list_has_its_jobs_moved(hosts, tmp_path):
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.webui_workers import WebUIWorker

    steady, doomed = hosts(delay=0.05), hosts(delay=0.3)
    listed = write_list(tmp_path, {"recipe": TWO_PASSES, "seeds": "1-6"})
    tasks = make_tasks(read_job_list(listed), None, default_checkpoint="")
    workers = [WebUIWorker(steady.url, "steady"), WebUIWorker(doomed.url, "doomed")]
    killed = []

    def kill_while_busy(run):
        if not killed and "doomed" in run.busy and run.summary.done >= 1:
            killed.append(run.busy["doomed"].spec.number)
            doomed.kill()

    out = tmp_path / "out"
    summary = ListRun(tasks, workers, out, observer=kill_while_busy).run()
    assert killed and summary.done == 6 and summary.failed == 0
    entries = {e["job"]: e for e in read_manifest(out)}
    moved = entries[killed[0]]
    assert moved["worker"] == "steady" and moved["attempts"] == 2
    assert moved["retries"][0].startswith("attempt 1 on doomed: host http://127.0.0.1:")
    assert "stopped answering" in moved["retries"][0]
    assert not workers[1].alive
    # once gone, the host gets no more jobs: everything after ran on the steady one
    assert all(len(list((out / e["folder"]).glob("*-final.png"))) == 1 for e in entries.values())


def test_cancel_interrupts_the_host_and_the_job_is_not_counted_done(hosts, tmp_path):
    """Ctrl-C with a WebUI worker: the host is interrupted (POST /sdapi/v1/interrupt), what it
    finished comes back and is written, and the job is cancelled, so a second run redoes it."""
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.webui_workers import WebUIWorker

    host = hosts(delay=0.4)
    listed = write_list(tmp_path, {"recipe": TWO_PASSES, "images": 4}, {"recipe": TWO_PASSES})
    tasks = make_tasks(read_job_list(listed), None, default_checkpoint="")
    asked = []

    def cancel_once_busy(run):
        if not asked and run.busy:
            asked.append(True)
            run.cancel()

    out = tmp_path / "out"
    summary = ListRun(tasks, [WebUIWorker(host.url, "h")], out, observer=cancel_once_busy).run()
    assert (summary.done, summary.cancelled, summary.not_started) == (0, 1, 1)
    (entry,) = read_manifest(out)
    assert entry["status"] == "cancelled" and entry["job"] == 1
    assert len(entry["files"]) < 4  # the host stopped early; what it made is kept


def test_jobs_go_only_to_hosts_with_their_checkpoints(hosts, tmp_path, capsys):
    """Hosts need not hold every model: a job goes to a host that has all its checkpoints;
    a checkpoint no host has, or a host that does not answer, is named before anything runs."""
    from lib_multipass.cli import main

    full, partial = hosts(), hosts(without=["photo"])
    toon_only = {"base": BASE, "passes": [{"denoising_strength": 0.4}]}
    listed = write_list(
        tmp_path,
        {"recipe": TWO_PASSES, "seeds": "1-3"},  # toon, then photo: only the full host
        {"recipe": toon_only, "seeds": "1-5"},
    )
    out = tmp_path / "out"
    urls = ["--webui-url", full.url, "--webui-url", partial.url]
    assert main(["jobs", str(listed), "--out", str(out), *urls]) == 0
    entries = read_manifest(out)
    assert len(entries) == 8 and {e["status"] for e in entries} == {"done"}
    partial_name = partial.url.removeprefix("http://")
    assert all(e["worker"] != partial_name for e in entries if e["line"] == 1)
    assert any(e["worker"] == partial_name for e in entries)  # it got the jobs it could run

    nope = {"base": {**BASE, "checkpoint": "nope"}, "passes": []}
    bad = write_list(tmp_path, {"recipe": toon_only}, {"recipe": nope})
    assert main(["jobs", str(bad), "--out", str(tmp_path / "o2"), *urls]) == 2
    err = capsys.readouterr().err
    assert (
        "l.jsonl line 2, field 'checkpoint': got 'nope'; allowed: a checkpoint of the hosts:" in err
    )
    assert not (tmp_path / "o2").exists()  # nothing ran
    full.kill()
    assert main(["jobs", str(bad), "--out", str(tmp_path / "o3"), *urls]) == 2
    err = capsys.readouterr().err
    assert f"field '--webui-url': got '{full.url}'" in err and "did not answer" in err


def test_a_host_killed_mid_job_keeps_its_images_and_resume_asks_only_the_rest(hosts, tmp_path):
    """With a request per image, each image is written as its request returns: the host killed
    mid-job leaves those on disk and in the manifest, and the next run of the list asks another
    host only for the rest, with the seeds of the whole job."""
    from lib_multipass.cli import main
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.manifest import read_images
    from lib_multipass.jobs.webui_workers import WebUIWorker

    doomed = hosts(delay=0.15)
    listed = write_list(tmp_path, {"recipe": TWO_PASSES, "seed": 10, "images": 6})
    tasks = make_tasks(read_job_list(listed), None, default_checkpoint="")
    out = tmp_path / "out"
    killed = []

    def kill_after_two_images(run):
        task = run.busy.get("doomed")
        if not killed and task is not None and len(task.written) >= 2:
            killed.append(dict(task.written))
            doomed.kill()

    worker = WebUIWorker(doomed.url, "doomed", images_per_request=1)
    summary = ListRun(tasks, [worker], out, observer=kill_after_two_images).run()
    assert killed and summary.failed == 1
    (entry,) = read_manifest(out)
    assert entry["reason"] == "no worker left to run it"
    before = read_images(out)
    assert [e["image"] for e in before] == list(range(1, len(before) + 1))
    assert entry["files"] == [e["file"] for e in before] and len(before) < 6
    folder = out / entry["folder"]
    kept = {e["file"]: (folder / e["file"]).stat().st_mtime_ns for e in before}

    steady = hosts()
    urls = ["--webui-url", steady.url, "--images-per-request", "1"]
    assert main(["jobs", str(listed), "--out", str(out), *urls]) == 0
    after = read_images(out)[len(before) :]
    assert [e["image"] for e in after] == list(range(len(before) + 1, 7))  # only the rest
    assert {e["worker"] for e in after} == {steady.url.removeprefix("http://")}
    assert all((folder / f).stat().st_mtime_ns == t for f, t in kept.items())
    files = sorted(p.name for p in folder.glob("*-final.png"))
    assert files == [f"{n:02d}-{9 + n}-final.png" for n in range(1, 7)]
    for name in files:  # each made with its own seed of the whole job's
        params = parse_params_line(Image.open(folder / name).info["parameters"].splitlines()[-1])
        assert params["Seed"] == name.split("-")[1]
    assert read_manifest(out)[-1]["status"] == "done"


@pytest.mark.parametrize("flavour", ["a1111", "neo"])
def test_jobs_with_their_own_images_go_to_img2img_with_them(hosts, tmp_path, flavour):
    """`init` on a host: POST /sdapi/v1/img2img with the job's images as base64 `init_images`
    (in order, a batch per request), the job's seeds and the same Multipass script args as
    txt2img jobs get; the outputs carry the images' names, as `multipass run --init` names
    them, with the infotext the host wrote."""
    from lib_multipass.cli import main
    from lib_multipass.recipe import parse_recipe, recipe_to_dict

    photos = tmp_path / "photos"
    photos.mkdir()
    colours = {"a.png": (200, 30, 30), "b.png": (30, 200, 30), "c.png": (30, 30, 200)}
    for name, colour in colours.items():
        Image.new("RGB", (64, 64), colour).save(photos / name)
    listed = write_list(tmp_path, {"recipe": TWO_PASSES, "init": "photos", "seed": 7})
    host = hosts(flavour)
    out = tmp_path / "out"
    urls = ["--webui-url", host.url, "--images-per-request", "2"]
    assert main(["jobs", str(listed), "--out", str(out), *urls]) == 0
    sent = [r for r in host.requests() if r["path"] in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img")]
    assert [r["path"] for r in sent] == ["/sdapi/v1/img2img"] * 2
    digests = [
        [[64, 64], hashlib.sha256(Image.new("RGB", (64, 64), c).tobytes()).hexdigest()]
        for c in colours.values()
    ]
    assert sent[0]["init"] == digests[:2] and sent[1]["init"] == digests[2:]
    recipe = recipe_to_dict(parse_recipe(TWO_PASSES))
    recipe.pop("base")
    for request, seed, count in zip(sent, (7, 9), (2, 1), strict=True):
        body = request["body"]
        assert body["seed"] == seed and body["batch_size"] == count and body["n_iter"] == 1
        assert (body["width"], body["height"]) == (64, 64) and body["denoising_strength"] == 0
        assert body["alwayson_scripts"] == {"multipass": {"args": [True, recipe]}}
        assert body["override_settings"] == {"sd_model_checkpoint": "toon", "randn_source": "CPU"}
    (entry,) = read_manifest(out)
    assert entry["status"] == "done"
    assert entry["files"] == ["01-a-final.png", "02-b-final.png", "03-c-final.png"]
    text = Image.open(out / entry["folder"] / "03-c-final.png").info["parameters"]
    params = parse_params_line(text.splitlines()[-1])
    assert params["Seed"] == "9" and params["Multipass passes"] == "2"


@pytest.mark.parametrize("answer", ["ok", "error", "silent"])
def test_the_hosts_progress_feeds_the_status_line_and_never_stops_a_job(hosts, tmp_path, answer):
    """While a host runs a job, its GET /sdapi/v1/progress (A1111's ProgressResponse) feeds the
    worker's status line and the list's step count; a host that answers it with an error, or
    never, only goes without: its job runs to the end."""
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.progress import Display
    from lib_multipass.jobs.webui_workers import WebUIWorker

    host = hosts(delay=0.4, progress=answer)
    listed = write_list(tmp_path, {"recipe": TWO_PASSES, "seed": 1, "images": 2})
    tasks = make_tasks(read_job_list(listed), None, default_checkpoint="")
    worker = WebUIWorker(host.url, "h", images_per_request=1)
    worker.poller.interval, worker.poller.timeout = 0.1, 1.0
    seen, bar = [], []

    def look(run):
        if run.busy and worker.task is not None:
            seen.append((worker.status(), worker.progress()))
            bar.append(run.display.bar.n)

    run = ListRun(tasks, [worker], tmp_path / "out", observer=look)
    run.display = Display([worker], run.total_steps, 1)
    assert run.run().done == 1
    asked = [r for r in host.requests() if r["path"].startswith("/sdapi/v1/progress")]
    assert asked, "the host was never asked for its progress"
    assert seen and all(s.startswith("job 1: at http://127.0.0.1:") for s, _ in seen)
    if answer == "ok":
        readings = [s for s, _ in seen if "step " in s and "%" in s]
        assert readings and any("Multipass" in s for s in readings)  # the host's textinfo
        shares = [done / total for _, (done, total) in seen if total]
        assert any(0 < share < 1 for share in shares)
        assert any(0 < n < run.total_steps for n in bar)  # the list's bar moved mid-job
    else:
        assert any("no progress from the host" in s for s, _ in seen)
        assert all(done == 0 or done == 500 for _, (done, _t) in seen)  # whole requests only


def test_variation_seeds_go_to_the_host_as_the_job_has_them(hosts, tmp_path):
    """A job with a variation strength: every image has the job's seed and its own variation
    seed (the WebUI's rule, as `multipass run` follows it); each request sends the seed and the
    variation seed of its first image, so split requests make the images one request would."""
    from lib_multipass.cli import main

    recipe = {
        "base": {**BASE, "subseed": 50, "subseed_strength": 0.3, "rng": "NV"},
        "passes": TWO_PASSES["passes"],
    }
    listed = write_list(tmp_path, {"recipe": recipe, "seed": 7, "images": 3})
    host = hosts()
    out = tmp_path / "out"
    urls = ["--webui-url", host.url, "--images-per-request", "2"]
    assert main(["jobs", str(listed), "--out", str(out), *urls]) == 0
    sent = [r["body"] for r in host.requests() if r["path"] == "/sdapi/v1/txt2img"]
    assert [(b["seed"], b["subseed"], b["n_iter"]) for b in sent] == [(7, 50, 2), (7, 52, 1)]
    assert {b["subseed_strength"] for b in sent} == {0.3}
    assert {b["override_settings"]["randn_source"] for b in sent} == {"NV"}  # the job's
    (entry,) = read_manifest(out)
    assert entry["seeds"] == [7, 7, 7] and entry["status"] == "done"
    folder = out / entry["folder"]
    for name in entry["files"]:
        params = parse_params_line(Image.open(folder / name).info["parameters"].splitlines()[-1])
        assert params["Seed"] == "7"


def test_the_lists_bar_never_goes_back_when_a_hosts_share_falls():
    """Seen in a real Forge Neo: the bar went from 18/20 back to 13/20. A host's progress is
    its job's share (job_no / job_count + step), and Multipass grows the count when its passes
    start, so a share can fall; the list's bar stays where it was until work passes it."""
    from types import SimpleNamespace

    from lib_multipass.jobs.progress import Display

    shares = iter([900, 950, 300, 600, 1000])
    worker = SimpleNamespace(name="h", alive=True, status=lambda: "running")
    worker.progress = lambda: (next(shares), 1000)
    task = SimpleNamespace(steps_left=20)
    summary = SimpleNamespace(done=0, failed=0, cancelled=0, images=0, loads={})
    run = SimpleNamespace(
        summary=summary, workers=[worker], busy={"h": task}, total_steps=20, steps_done=0
    )
    display = Display([worker], 20, 1)
    seen = []
    for _ in range(5):
        display.update(run)
        seen.append(display.bar.n)
    display.close()
    assert seen == [18, 19, 19, 19, 20]
