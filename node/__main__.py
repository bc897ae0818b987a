"""``python -m node`` is the ``idnode`` command."""

import sys

from node.cli import main

sys.exit(main())
