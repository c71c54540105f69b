"""python -m gogin: the same as gogin-server."""

import sys

from gogin.cli import server_main

sys.exit(server_main())
