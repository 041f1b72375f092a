"""``python -m denarius.serving.cli``: the ``denarius`` command, run by the interpreter itself."""

from denarius.serving.cli import main

raise SystemExit(main())
