"""``python -m featuremap``: the ``featuremap`` command."""

from __future__ import annotations

from featuremap.cli.main import entry_point

__all__: list[str] = []

if __name__ == "__main__":
    entry_point()
