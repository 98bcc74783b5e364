"""``python -m m3dgan`` is the ``m3dgan`` command (and what ``torchrun -m m3dgan`` runs)."""

import sys

from m3dgan.cli import main

sys.exit(main())
