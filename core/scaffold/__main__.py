"""python -m roost.core.scaffold NAME: the same as `roost new-integration NAME`."""

import sys

from . import main

sys.exit(main(prog="python -m roost.core.scaffold"))
