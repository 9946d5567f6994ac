"""Entry point of ``python -m orderstudy.benchmarks.lawbench``; see ``cli``."""

import sys

from .cli import main

sys.exit(main())
