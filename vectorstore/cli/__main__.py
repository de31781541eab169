"""``python -m vectorstore.cli``."""

import sys

from vectorstore.cli import main

sys.exit(main())
