"""The list's manifest: one JSON line per job that ended (done, failed or cancelled), and
before it one line per image as each is written, each appended and flushed at once, so a
crash loses nothing already said.

A job's line has its `status`; an image's line has `image` (its number in the job) and `file`
and no status. A second run of the same list into the same folder reads it, skips every job
whose last line says done (jobs are known by their key, a hash of their recipe and inputs, so
editing or reordering the list keeps what is finished), and runs a job stopped part-way from
its first image not written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_NAME = "jobs-manifest.jsonl"


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """Every job line of the folder's manifest, in order."""
    return [e for e in read_lines(out_dir) if "status" in e]


def read_images(out_dir: Path) -> list[dict[str, Any]]:
    """Every image line of the folder's manifest, in order."""
    return [e for e in read_lines(out_dir) if "status" not in e and "image" in e]


def read_lines(out_dir: Path) -> list[dict[str, Any]]:
    """Every readable line of the folder's manifest (a line cut short by a crash is skipped)."""
    path = Path(out_dir) / MANIFEST_NAME
    lines: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return lines
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def finished_keys(out_dir: Path) -> set[str]:
    """The keys of the jobs whose last manifest line says done."""
    last: dict[str, str] = {}
    for entry in read_manifest(out_dir):
        if isinstance(entry.get("key"), str):
            last[entry["key"]] = str(entry.get("status"))
    return {k for k, status in last.items() if status == "done"}


def written_images(out_dir: Path, key: str, folder: str) -> dict[int, str]:
    """The images of job `key` an earlier run wrote into `folder` and that are still there:
    index (0-based) -> file name."""
    found: dict[int, str] = {}
    for entry in read_images(out_dir):
        number, name = entry.get("image"), entry.get("file")
        if entry.get("key") != key or entry.get("folder") != folder:
            continue
        if not isinstance(number, int) or number < 1 or not isinstance(name, str):
            continue
        if "/" not in name and "\\" not in name and (Path(out_dir) / folder / name).is_file():
            found[number - 1] = name
    return found


class Manifest:
    """Appends lines to the folder's manifest, each flushed to disk before the next."""

    def __init__(self, out_dir: Path) -> None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(out_dir) / MANIFEST_NAME

    def add(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with open(self.path, "ab") as fh:
            if fh.tell() and _last_byte(self.path) != b"\n":
                line = "\n" + line  # a line cut short by a crash stays a line of its own
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)
