"""Entry script for the PyInstaller bundle: the same as ``moviechat-desktop``."""

import multiprocessing
import sys

from moviechat_desktop.cli import main

if __name__ == "__main__":
    # the assistant's engine runs in a child process started with "spawn": in a frozen bundle
    # the child is this executable again, and freeze_support() turns it into the engine
    multiprocessing.freeze_support()
    sys.exit(main())
