"""`torchrun ... -m vlbridge.train MODEL ...`: the entry each process of `vlbridge train` runs
(vlbridge.book.train)."""
import os
import sys

from .book.cli import main

if __name__ == "__main__":
    status = main(["train", *sys.argv[1:]])
    # The work is done: saved, and every rank past the last barrier, with the process group destroyed.
    # Leave without the interpreter's teardown, where C++ objects of the gloo process group that Python
    # objects still held were destroyed with their threads running: "terminate called without an active
    # exception", SIGABRT, and torchrun failing the whole run (2 of 17 two-process runs on a busy machine).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
