"""python -m safebox.tools.attacks (see the package's docstring)."""

import sys

from safebox.tools.attacks.cli import main

sys.exit(main())
