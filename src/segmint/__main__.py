"""``python -m segmint``: the ``segmint`` command."""

from segmint.cli import main

main()
