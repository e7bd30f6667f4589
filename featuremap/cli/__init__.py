"""The ``featuremap`` command line: one module per command, :mod:`featuremap.cli.main` the group."""
