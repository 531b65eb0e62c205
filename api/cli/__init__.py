"""The ``vary`` command: one package for every sub-command."""
