"""``python -m taskforge.cli``: the ``taskforge`` command."""

from taskforge.cli import main

main()
