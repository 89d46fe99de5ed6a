"""`python -m dltrain.serve MODEL ...`: see `server.main`."""

import sys

from .server import main

sys.exit(main())
