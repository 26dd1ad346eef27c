"""``python -m segmint``: the ``segmint`` command."""

from segmint.cli import main

if __name__ == "__main__":
    main()
