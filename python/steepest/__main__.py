"""``python -m steepest``: the command line (steepest.cli)."""
import sys

from .cli import main

sys.exit(main())
