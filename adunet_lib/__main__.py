"""``python -m adunet_lib …`` = ``adunet …`` (what ``torchrun -m adunet_lib run …`` starts in each process)."""

import sys

from adunet_lib.cli import main

sys.exit(main())
