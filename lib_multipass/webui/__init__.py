"""The WebUI glue: imports the host's `modules` lazily, so the package imports anywhere."""
