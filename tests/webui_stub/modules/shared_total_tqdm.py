"""modules/shared_total_tqdm.py (A1111 1.10.1, reForge, Forge 2): the console's "Total
progress" bar, a tqdm in `_tqdm` made at the first step with job_count * sampling_steps as its
total; the samplers call update() after every step (sd_samplers_common.py:272); updateTotal()
sets the total (hires fix does, processing.py:1332). Newest Neo has no such bar. The stand-in
counts instead of printing."""

from types import SimpleNamespace

from modules import shared


class TotalTQDM:
    def __init__(self):
        self._tqdm = None

    def reset(self):
        total = shared.state.job_count * shared.state.sampling_steps
        self._tqdm = SimpleNamespace(total=total, n=0)

    def update(self):
        if self._tqdm is None:
            self.reset()
        self._tqdm.n += 1

    def updateTotal(self, new_total):
        if self._tqdm is None:
            self.reset()
        self._tqdm.total = new_total

    def clear(self):
        self._tqdm = None
