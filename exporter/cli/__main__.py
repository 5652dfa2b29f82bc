"""``python -m exporter.cli``: the same as the ``batch-metrics`` console script."""

import sys

from exporter.cli.main import main

sys.exit(main())
