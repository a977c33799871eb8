"""``python -m perflab.calibration``: run the calibration server until Ctrl-C."""

import sys

from perflab.calibration.cli import main

if __name__ == "__main__":
    sys.exit(main())
