"""``python -m saru`` runs the ``saru`` command."""

import sys

from saru.cli.main import main

sys.exit(main())
