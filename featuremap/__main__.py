"""``python -m featuremap``: the ``featuremap`` command."""

from __future__ import annotations

import sys

from featuremap.cli.main import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
