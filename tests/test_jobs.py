"""Job lists: the file format, affinity, and the embedded engine run the way users run it."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lib_multipass.jobs.affinity import Need, pick
from lib_multipass.jobs.listfile import parse_job_list
from lib_multipass.jobs.manifest import MANIFEST_NAME, read_manifest
from lib_multipass.recipe import RecipeError

BASE = {"width": 64, "height": 64, "steps": 3, "prompt": "a fox"}
TOON_PHOTO = {
    "base": {**BASE, "checkpoint": "tiny-toon", "seed": 5},
    "passes": [{"checkpoint": "tiny-photo", "denoising_strength": 0.5}],
}
PHOTO = {"base": {**BASE, "checkpoint": "tiny-photo", "seed": 9}, "passes": []}


def lines(*objects) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"


# -- the file ----------------------------------------------------------------------------------


def test_a_line_is_a_recipe_with_overrides(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(TOON_PHOTO))
    text = lines(
        "# comments and blank lines are skipped",
        "",
        {"recipe": "r.json", "prompt": "an owl", "seed": 7, "images": 2, "size": "128x64"},
        {"recipe": PHOTO, "checkpoint": "tiny-toon", "steps": 5, "name": "inline one"},
    )
    first, second = parse_job_list(text, "l.jsonl", tmp_path)
    assert first.where == "l.jsonl line 3" and first.line == 3 and first.number == 1
    assert first.recipe.base.prompt == "an owl" and first.recipe.base.seed == 7
    assert first.recipe.base.images == 2 and first.size == (128, 64)
    assert first.recipe.passes[0].checkpoint == "tiny-photo"  # the file's passes
    assert first.recipe_dir == tmp_path and first.name == "r"
    assert second.recipe.base.checkpoint == "tiny-toon" and second.recipe.base.steps == 5
    assert second.name == "inline one" and second.folder == "0002-inline-one-9"


def test_plural_keys_make_a_product(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(TOON_PHOTO))
    text = lines(
        {
            "recipes": ["a.json", PHOTO],
            "prompts": ["a fox", "an owl", "a cat"],
            "seeds": "100-103",
        },
        {"recipe": "a.json", "seeds": [1, 5], "checkpoints": ["tiny-toon", "tiny-photo"]},
    )
    jobs = parse_job_list(text, "l.jsonl", tmp_path)
    assert len(jobs) == 2 * 3 * 4 + 2 * 2
    assert [j.number for j in jobs] == list(range(1, 29))
    assert jobs[0].where == "l.jsonl line 1, job 1 of 24"
    combos = {(j.recipe_name, j.recipe.base.prompt, j.recipe.base.seed) for j in jobs[:24]}
    assert len(combos) == 24
    assert {j.recipe.base.seed for j in jobs[:24]} == {100, 101, 102, 103}
    assert {(j.recipe.base.checkpoint, j.recipe.base.seed) for j in jobs[24:]} == {
        ("tiny-toon", 1),
        ("tiny-toon", 5),
        ("tiny-photo", 1),
        ("tiny-photo", 5),
    }
    # a job is known by what it is, not where it is: the same job on another line, same key
    again = parse_job_list(lines({"recipe": "a.json", "seed": 5}), "x.jsonl", tmp_path)
    assert again[0].key == jobs[25].key
    assert len({j.key for j in jobs}) == len(jobs)


def test_every_problem_of_every_line_at_once(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(TOON_PHOTO))
    text = lines(
        {"recipe": "r.json", "seed": "x"},
        "{nope",
        {"recipe": "r.json", "promt": "a"},
        {"recipe": "missing.json"},
        {"recipe": {"passes": [{"denoising_strength": 7}]}},
        {"recipe": "r.json", "seeds": "9-1"},
        {"recipe": "r.json", "size": "65x64", "steps": 0},
    )
    with pytest.raises(RecipeError) as e:
        parse_job_list(text, "l.jsonl", tmp_path)
    said = str(e.value)
    for part in (
        "l.jsonl line 1, field 'seed': got 'x'",
        "l.jsonl line 2, field '(line)'",
        "l.jsonl line 3, field 'promt'",
        "did you mean 'prompt'?",
        "l.jsonl line 4, recipe file",
        "missing.json",
        "l.jsonl line 5, recipe, pass 1, field 'denoising_strength': got 7",
        "l.jsonl line 6, field 'seeds': got '9-1'",
        "l.jsonl line 7, field 'size': got '65x64'",
        "l.jsonl line 7, field 'steps': got 0",
    ):
        assert part in said, said


def test_jobs_of_a_line_never_make_one_seed_twice(tmp_path):
    """seeds 1-3 with 2 images each would make seeds 2 and 3 twice: named, with the way out."""
    with pytest.raises(RecipeError) as e:
        parse_job_list(lines({"recipe": PHOTO, "seeds": "1-3", "images": 2}), "l.jsonl", tmp_path)
    assert "l.jsonl line 1, field 'seeds': got '1 and 2'" in str(e.value)
    assert "e.g. a list [1, 3, 5], or images 1" in str(e.value)
    spaced = {"recipe": PHOTO, "seeds": [1, 3, 5], "images": 2}
    other_prompts = {"recipe": PHOTO, "seeds": [1, 3], "images": 2, "prompts": ["a", "b"]}
    assert len(parse_job_list(lines(spaced, other_prompts), "l.jsonl", tmp_path)) == 3 + 4


# -- affinity ----------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])


@given(st.lists(NAMES, min_size=1, max_size=30))
def test_one_worker_takes_each_checkpoint_s_jobs_together(firsts):
    """Embedded: the whole list grouped by checkpoint, so each is loaded once."""
    waiting = [Need((n,)) for n in firsts]
    held: set[str] = set()
    loaded, order = "", []
    while waiting:
        need = waiting.pop(pick(waiting, held, loaded))
        order.append(need.first)
        held.add(need.first)
        loaded = need.first
    runs = [n for i, n in enumerate(order) if i == 0 or order[i - 1] != n]
    assert len(runs) == len(set(firsts))  # each checkpoint's jobs in one run


@given(
    st.lists(st.lists(NAMES, min_size=1, max_size=3), min_size=1, max_size=20),
    st.sets(NAMES),
    st.lists(NAMES, max_size=3),
)
def test_a_worker_takes_a_job_needing_no_new_load_when_there_is_one(needs, held, others):
    waiting = [Need(tuple(dict.fromkeys(n))) for n in needs]
    chosen = waiting[pick(waiting, held, "", others)]
    if any(set(n.checkpoints) <= held for n in waiting):
        assert set(chosen.checkpoints) <= held


def test_idle_workers_spread_over_checkpoints():
    waiting = [Need(("a",))] * 5 + [Need(("b",))] * 2
    assert waiting[pick(waiting, set(), "", others=[])].first == "a"  # the largest group
    assert waiting[pick(waiting, set(), "", others=["a"])].first == "b"  # not where others are
    # nothing of its own left: it helps with the largest group rather than idle
    assert waiting[pick([Need(("a",))] * 3, {"b"}, "b", others=["a"])].first == "a"


# -- the embedded engine, as users run it ------------------------------------------------------


@pytest.fixture
def home(tiny_models, monkeypatch):
    monkeypatch.setenv("MULTIPASS_HOME", str(tiny_models.parent))
    return tiny_models.parent


def pixels(path: Path) -> bytes:
    return Image.open(path).convert("RGB").tobytes()


def finals(folder: Path) -> list[Path]:
    return sorted(folder.glob("*-final.png"))


def test_embedded_list_gives_the_images_of_run_job_by_job(home, tmp_path):
    from lib_multipass.cli import main

    (tmp_path / "tp.json").write_text(json.dumps(TOON_PHOTO))
    (tmp_path / "p.json").write_text(json.dumps(PHOTO))
    (tmp_path / "l.jsonl").write_text(
        lines(
            {"recipe": "tp.json", "seed": 11, "images": 2},
            {"recipe": "p.json"},
            {"recipe": "tp.json", "seed": 12, "prompt": "an owl"},
        )
    )
    out = tmp_path / "out"
    assert main(["jobs", str(tmp_path / "l.jsonl"), "--out", str(out), "--cache-mb", "500"]) == 0
    entries = read_manifest(out)
    assert [e["status"] for e in entries] == ["done"] * 3
    by_job = {e["job"]: e for e in entries}
    alone = [
        ["tp.json", "--seed", "11", "--images", "2"],
        ["p.json"],
        ["tp.json", "--seed", "12"],
    ]
    for number, args in enumerate(alone, 1):
        if number == 3:  # the prompt override, as a recipe of its own
            changed = json.loads(json.dumps(TOON_PHOTO))
            changed["base"]["prompt"] = "an owl"
            (tmp_path / "owl.json").write_text(json.dumps(changed))
            args = ["owl.json", "--seed", "12"]
        single = tmp_path / f"single-{number}"
        assert main(["run", str(tmp_path / args[0]), *args[1:], "--out", str(single)]) == 0
        mine = finals(out / by_job[number]["folder"])
        theirs = finals(single)
        assert [p.name for p in mine] == [p.name for p in theirs]
        assert [pixels(p) for p in mine] == [pixels(p) for p in theirs], number
        assert by_job[number]["seeds"] == [int(p.name.split("-")[1]) for p in theirs]
        assert by_job[number]["worker"] == "local" and by_job[number]["attempts"] == 1
    # one worker over the whole list: each checkpoint read from disk once
    loads = [(k, v) for e in entries for k, v in e["loads"].items()]
    assert sorted(loads) == [("tiny-photo", 1), ("tiny-toon", 1)]


def test_a_second_run_skips_what_is_done(home, tmp_path):
    from lib_multipass.cli import main

    (tmp_path / "p.json").write_text(json.dumps(PHOTO))
    listed = lines(*({"recipe": "p.json", "seed": s} for s in (1, 2, 3)))
    (tmp_path / "l.jsonl").write_text(listed)
    out = tmp_path / "out"
    args = ["jobs", str(tmp_path / "l.jsonl"), "--out", str(out)]
    assert main(args) == 0
    entries = read_manifest(out)
    # as if the run had been cut short after two jobs: the third's line never written
    manifest = out / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries[:2]) + '{"job": 3, "st')
    kept = {p: p.stat().st_mtime_ns for e in entries[:2] for p in finals(out / e["folder"])}
    assert main(args) == 0
    again = read_manifest(out)
    assert len(again) == 3 and again[2]["key"] == entries[2]["key"]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # not run again
    assert main(args) == 0 and len(read_manifest(out)) == 3  # all done: nothing runs
    assert main([*args, "--fresh"]) == 0 and len(read_manifest(out)) == 6


def test_a_failing_job_says_why_and_the_rest_go_on(home, tmp_path, tiny_models, capsys):
    from conftest import misshapen_copy

    from lib_multipass.cli import main

    misshapen_copy(tiny_models, tmp_path / "models" / "broken.safetensors")
    broken = {"base": {**BASE, "checkpoint": "broken"}, "passes": []}
    (tmp_path / "l.jsonl").write_text(
        lines({"recipe": PHOTO}, {"recipe": broken}, {"recipe": PHOTO, "seed": 3})
    )
    out = tmp_path / "out"
    code = main(
        ["jobs", str(tmp_path / "l.jsonl"), "--out", str(out), "--models", str(tmp_path / "models")]
    )
    assert code == 1
    entries = {e["job"]: e for e in read_manifest(out)}
    assert entries[1]["status"] == entries[3]["status"] == "done"
    assert entries[2]["status"] == "failed" and "Cannot load" in entries[2]["reason"]
    assert "1 job(s) failed; the manifest says why" in capsys.readouterr().err


def test_cancel_stops_after_the_current_step_and_resume_finishes(home, tmp_path):
    """Ctrl-C: the running job keeps what it finished, the waiting ones are left for the next
    run, which runs them and only them."""
    from lib_multipass.cli import backend_settings, build_parser, main, registry
    from lib_multipass.jobs.driver import ListRun, make_tasks
    from lib_multipass.jobs.listfile import read_job_list
    from lib_multipass.jobs.workers import LocalWorker

    recipe = {"base": {**BASE, "checkpoint": "tiny-toon", "steps": 6}, "passes": []}
    (tmp_path / "l.jsonl").write_text(lines({"recipe": recipe, "seeds": [1, 3, 5, 7], "images": 2}))
    args = build_parser()["jobs"].parse_args([str(tmp_path / "l.jsonl")])
    from lib_multipass.backends.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(**backend_settings(args, 0))
    tasks = make_tasks(read_job_list(tmp_path / "l.jsonl"), backend, default_checkpoint="")
    out = tmp_path / "out"

    def stop_in_job_2(run):
        if any(t.spec.number == 2 for t in run.busy.values()) and run.workers[0].progress()[0]:
            run.cancel()

    run = ListRun(tasks, [LocalWorker(backend, registry(args))], out, observer=stop_in_job_2)
    summary = run.run()
    assert (summary.done, summary.cancelled, summary.not_started) == (1, 1, 2)
    entries = read_manifest(out)
    assert [e["status"] for e in entries] == ["done", "cancelled"]
    assert "cancelled" in entries[1]["reason"]
    assert main(["jobs", str(tmp_path / "l.jsonl"), "--out", str(out)]) == 0
    entries = read_manifest(out)
    assert [e["job"] for e in entries[2:]] == [2, 3, 4]
    assert all(len(finals(out / e["folder"])) == 2 for e in entries[2:])


def test_ctrl_c_on_the_command_keeps_what_is_done(home, tmp_path):
    """A real SIGINT to `multipass jobs`: the running job stops after its current step and is
    written and marked cancelled, the finished ones stay, exit 3; the next run does the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    slow = {"base": {**BASE, "checkpoint": "tiny-toon", "steps": 10, "images": 2}, "passes": []}
    slow["passes"] = [{"checkpoint": "tiny-photo", "denoising_strength": 0.9}]
    (tmp_path / "l.jsonl").write_text(lines({"recipe": slow, "seeds": [1, 3, 5]}))
    env = {**os.environ, "MULTIPASS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "lib_multipass", "jobs", "l.jsonl", "--out", "o"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    manifest = tmp_path / "o" / MANIFEST_NAME
    end = time.monotonic() + 600
    while not (manifest.exists() and manifest.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < end, "the first job never ended"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    said = out.decode() + err.decode()
    assert proc.returncode == 3, said
    assert "stopping after the current step" in said and "Traceback" not in said
    statuses = [e["status"] for e in read_manifest(tmp_path / "o")]
    # the signal stops the job that runs (cancelled) or, between jobs, the next one's start
    assert set(statuses[:-1]) <= {"done"} and statuses[-1] in ("done", "cancelled")
    assert len(statuses) <= 3 and statuses.count("done") < 3
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=False)
    assert again.returncode == 0, again.stderr.decode()
    entries = read_manifest(tmp_path / "o")
    done = [e["job"] for e in entries if e["status"] == "done"]
    assert sorted(done) == [1, 2, 3] and len(done) == 3  # nothing ran twice
    # a cancelled job went on from its first image not written: no partial image is left
    assert not list((tmp_path / "o").glob("*/*-partial.png"))
    finals = sorted(p.name for p in (tmp_path / "o").glob("*/*-final.png"))
    assert len(finals) == 6


def test_a_lost_job_goes_elsewhere_when_there_is_an_elsewhere():
    from lib_multipass.jobs.driver import may_take

    assert may_take(set(), "a", ["a", "b"])
    assert not may_take({"a"}, "a", ["a", "b"])  # b has not lost it: b takes it
    assert may_take({"a"}, "a", ["a"])  # the only worker left
    # lost on every live worker (restarted actors): it still runs while its attempts last
    assert may_take({"a", "b"}, "a", ["a", "b"]) and may_take({"a", "b"}, "b", ["a", "b"])
    assert may_take({"a"}, "b", ["b"])
