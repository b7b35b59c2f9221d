import sys

from influence_core.cli import main

sys.exit(main())
