"""python -m safebox.tools.chaos (see the package's docstring)."""

import sys

from safebox.tools.chaos.cli import main

sys.exit(main())
