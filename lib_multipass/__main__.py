"""`python -m lib_multipass` is the `multipass` command."""

import sys

from .cli import main

sys.exit(main())
