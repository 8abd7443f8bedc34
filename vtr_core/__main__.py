import sys

from vtr_core.cli import main

sys.exit(main())
