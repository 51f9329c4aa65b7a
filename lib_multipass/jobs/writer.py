"""Writing a list's output, the driver's only way to disk: each image the moment a worker sends
it (with its manifest line), the rest of a job when it ends (images it had not sent, the
stages, contact sheet, recipe and result.json), and the job's manifest line.

An image is written once: a job run again (its worker was lost, or the list was stopped) starts
at its first image not written, and an image that comes again is not written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .images import Picture, file_name
from .manifest import Manifest, written_images
from .workers import Outcome, Task


class Writer:
    """Writes the jobs of one list into `out_dir`, one folder per job."""

    def __init__(self, out_dir: Path, *, stages: bool = False, animation: Any = None) -> None:
        self.out_dir = Path(out_dir)
        self.stages = stages
        self.animation = animation  # runner.Animation: each image's chain, at the job's end
        self.manifest = Manifest(self.out_dir)
        self.images = 0  # image files written by this run

    def folder(self, task: Task) -> Path:
        return self.out_dir / task.spec.folder

    def resume(self, task: Task) -> None:
        """Take the images an earlier run wrote for this job (where its seeds are fixed, so
        the rest makes the same images): the next attempt starts at the first missing one."""
        base = task.spec.recipe.base
        random_seeds = base is None or base.seed == -1
        random_seeds |= base is not None and base.subseed_strength != 0 and base.subseed == -1
        if not random_seeds:
            task.written = written_images(self.out_dir, task.spec.key, task.spec.folder)
            task.start_after_written()

    def starting(self, task: Task) -> None:
        """Before a job's first attempt: the files of an earlier run of it are cleared, unless
        it goes on from that run's images."""
        from ..runner import _clear_previous

        if task.first == 0 and not task.written:
            _clear_previous(self.folder(task))

    def picture(self, task: Task, worker: str, picture: Picture) -> str | None:
        """Write one image a worker sent (its index counts from the attempt's first image);
        its file name, or None for an image already written."""
        from ..runner import _save

        index = task.first + picture.index
        if index in task.written or not 0 <= index < task.job.count:
            return None
        folder = self.folder(task)
        folder.mkdir(parents=True, exist_ok=True)
        name = file_name(index + 1, picture.stem, picture.state)
        _save(picture.image, folder / name, picture.text)
        self.images += 1
        if picture.state == "final":
            self._note(task, index, name, worker)
        else:
            task.partials.append(name)
        return name

    def _note(self, task: Task, index: int, name: str, worker: str) -> None:
        """An image finished: no partial of it is left, and the manifest says it is there."""
        for old in self.folder(task).glob(f"{index + 1:02d}-*-partial.png"):
            old.unlink(missing_ok=True)
        task.written[index] = name
        seeds = list(task.job.seeds)
        self.manifest.add(
            {
                "job": task.spec.number,
                "key": task.spec.key,
                "folder": task.spec.folder,
                "image": index + 1,
                "file": name,
                "seed": seeds[index] if index < len(seeds) else None,
                "worker": worker,
                "attempt": task.attempt,
            }
        )

    def ended(self, task: Task, worker: str, outcome: Outcome) -> list[str]:
        """Write what a job's end brings (from a diffusers worker: the images it had not sent,
        each partial one as such, the chain animations and the job's other files); the job's
        image files (finals, partials, animations)."""
        animations: list[str] = []
        if outcome.result is not None:
            from ..runner import Animation, write_outputs

            kept = {i - task.first for i in task.written if i >= task.first}
            written = write_outputs(
                outcome.result,
                task.spec.recipe,
                task.to_run,
                self.folder(task),
                stages=self.stages,
                animation=self.animation or Animation(),
                first=task.first,
                kept=kept,
            )
            animations = [path.name for path in written.animations]
            made = [i for i, outputs in enumerate(outcome.result.outputs) if outputs]
            for i, path in zip(made, written.finals, strict=True):
                if i in kept:
                    continue
                self.images += 1
                if path.name.endswith("-final.png"):
                    self._note(task, task.first + i, path.name, worker)
                else:
                    task.partials.append(path.name)
        return task.written_files + task.partials + animations

    def record(
        self,
        task: Task,
        worker: str | None,
        status: str,
        reason: str,
        outcome: Outcome | None = None,
        files: Sequence[str] = (),
    ) -> None:
        """The job's manifest line."""
        entry: dict[str, Any] = {
            "job": task.spec.number,
            "line": task.spec.line,
            "key": task.spec.key,
            "name": task.spec.name,
            "folder": task.spec.folder,
            "status": status,
            "reason": reason,
            "seeds": list(task.job.seeds),
            "worker": worker,
            "attempts": task.attempt,
            "retries": task.retries,
            "loads": outcome.loads if outcome else {},
            "switches": outcome.switches if outcome else [],
            "seconds": round(outcome.seconds, 3) if outcome else 0,
            "files": list(files),
        }
        self.manifest.add(entry)
