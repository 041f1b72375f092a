"""``python -m serving.cli``: the ``denarius`` command where the package is not installed."""

from serving.cli import main

raise SystemExit(main())
