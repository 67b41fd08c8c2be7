"""``python -m lrbench`` is the ``lrbench`` command."""

from lrbench.cli import main

if __name__ == "__main__":
    main()
