"""`python -m agenttally.cli ...`: the same as `agenttally ...`."""

import sys

from agenttally.cli import main

sys.exit(main())
