"""``python -m coffre`` is the ``coffre`` command."""

import sys

from coffre.cli import main

sys.exit(main())
