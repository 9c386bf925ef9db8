"""Entry script for the PyInstaller bundle: the same as ``moviechat-desktop``."""

import sys

from moviechat_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
