"""``python -m pipeline`` is the ``imuflow`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
