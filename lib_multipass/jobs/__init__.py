"""Job lists: many jobs from one file, run in this process, on Ray workers or on WebUI hosts.

- `listfile`: the JSON Lines format (a recipe with overrides per line, or a product of recipes x
  prompts x checkpoints x seeds), read and checked before anything runs. Pure: no torch.
- `affinity`: which waiting job an idle worker takes, so each worker loads each checkpoint once.
- `manifest`: one JSON line per finished job; what a second run of the same list skips.
- `workers`: what the driver asks of a worker (this process, a Ray actor, a WebUI host).
- `driver`: hands jobs to idle workers, writes what comes back as it comes, retries jobs of a
  worker that died, and stops everyone after their current step on Ctrl-C.
"""
