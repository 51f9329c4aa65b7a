"""One progress bar for the whole list (steps, jobs, ETA) and a status line per worker."""

from __future__ import annotations

import sys
from typing import Any


class Display:
    """tqdm bars on stderr: the list's steps, then one line per worker."""

    def __init__(self, workers: list[Any], total_steps: int, jobs: int) -> None:
        from tqdm import tqdm

        self.jobs = jobs
        self.text = ""
        self.bar = tqdm(
            total=total_steps, unit="step", dynamic_ncols=True, file=sys.stderr, position=0
        )
        # a status line per worker where they can be redrawn in place (a terminal)
        shown = workers if sys.stderr.isatty() else []
        self.lines = {
            w.name: tqdm(bar_format="{desc}", file=sys.stderr, position=i + 1)
            for i, w in enumerate(shown)
        }

    def update(self, run: Any) -> None:
        s = run.summary
        ended = s.done + s.failed + s.cancelled
        running = 0
        for w in run.workers:
            task = run.busy.get(w.name)
            if task is not None:
                done, total = w.progress()
                running += round(task.steps_left * done / total) if total else 0
            state = w.status() if w.alive else "gone"
            loads = ", ".join(f"{k} x{v}" for k, v in sorted(s.loads.get(w.name, {}).items()))
            if w.name not in self.lines:
                continue
            self.lines[w.name].set_description_str(
                f"  {w.name}: {state}" + (f" | loaded: {loads}" if loads else ""), refresh=True
            )
        text = f"jobs {ended}/{self.jobs}, {s.images} images"
        # never back: a host's share of its job can fall (Multipass grows the host's job count
        # when its passes start), and a bar that runs backwards says work was undone
        step = max(0, min(run.total_steps, run.steps_done + running) - self.bar.n)
        if text != self.text or step:  # redrawn only when something changed (logs stay short)
            self.text = text
            self.bar.set_description(text, refresh=not step)
            if step:
                self.bar.update(step)

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        self.bar.close()
