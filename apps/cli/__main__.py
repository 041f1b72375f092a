"""``python -m denarius.apps.cli``: the ``denarius`` command, run by the interpreter itself."""

from denarius.apps.cli import main

raise SystemExit(main())
