import sys

from safebox.tools.vm.cli import main

sys.exit(main())
