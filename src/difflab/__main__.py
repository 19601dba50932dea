"""python -m difflab == difflab."""
import sys

from difflab.cli.main import main

sys.exit(main())
