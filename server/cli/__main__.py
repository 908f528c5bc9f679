"""``python -m tuneprint.server.cli``: the same as the ``tuneprint`` console script."""
import sys

from . import main

sys.exit(main())
