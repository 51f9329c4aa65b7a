"""The list's manifest: one JSON line per job that ended (done, failed or cancelled), appended
and flushed as each job's images are written, so a crash loses nothing already said.

A second run of the same list into the same folder reads it and skips every job whose last
line says done (jobs are known by their key, a hash of their recipe and inputs, so editing or
reordering the list keeps what is finished).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_NAME = "jobs-manifest.jsonl"


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
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


class Manifest:
    """Appends job lines to the folder's manifest, each flushed to disk before the next job."""

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
