import sys

from denarius.serving.cli import main

sys.exit(main())
