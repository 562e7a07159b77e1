"""`python -m vlbridge ...` is the `vlbridge` command (useful where the console script is not on PATH)."""
import sys

from .book.cli import main

sys.exit(main())
