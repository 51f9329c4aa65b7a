"""Job lists: many jobs from one file, run in this process, on Ray workers or on WebUI hosts.

- `listfile`: the JSON Lines format (a recipe with overrides per line, or a product of recipes x
  prompts x checkpoints x seeds), read and checked before anything runs. Pure: no torch.
- `tasks`: each job checked as `multipass run` checks it, with what it loads and its steps.
- `affinity`: which waiting job an idle worker takes, so each worker loads each checkpoint once.
- `workers`: what the driver asks of a worker (this process, a Ray actor, a WebUI host);
  `ray_workers` and `webui_workers` (with `webui_requests`, what a host is sent, and
  `host_progress`, the host's own progress while it runs a job) are the other two.
- `images`: a job's images one by one, and the rest of a job whose first images are written.
- `manifest`: a JSON line per image written and per job that ended; what a second run skips.
- `writer`: each image to disk as it arrives, the rest of a job at its end, the manifest lines.
- `driver`: hands jobs to idle workers, writes what comes back as it comes (through `writer`),
  retries jobs of a worker that died from their first image not written, and stops everyone
  after their current step on Ctrl-C.
"""
