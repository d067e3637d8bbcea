"""`python -m interp ...` is the `safety-heads` command (what `torchrun -m interp` starts)."""

import sys

from interp.cli import main

sys.exit(main())
