"""`python -m lib_multipass` is the `multipass` command."""

from .cli import command

command()
