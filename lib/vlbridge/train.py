"""`torchrun ... -m vlbridge.train MODEL ...`: the entry each process of `vlbridge train` runs
(vlbridge.book.train)."""
import sys

from .book.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
