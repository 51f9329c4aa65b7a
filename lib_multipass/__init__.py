"""Multipass: chain checkpoints, denoise schedules and detailed-inpaint crops in one job.

The pure modules (fields, recipe, schedule, geometry, infotext, plan) import no torch, gradio
or WebUI `modules`, so they load inside any WebUI and in plain Python 3.10+.
"""

__version__ = "0.4.0"
