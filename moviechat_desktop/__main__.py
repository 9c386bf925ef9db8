"""``python -m moviechat_desktop`` is the same as the ``moviechat-desktop`` command."""

import sys

from moviechat_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
