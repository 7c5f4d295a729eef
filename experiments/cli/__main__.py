"""``python -m experiments.cli``: the ``synctwin`` command."""

from experiments.cli import main

main()
