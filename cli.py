"""``python cli.py ...`` runs the ``lrbench`` command; the CLI itself is :mod:`lrbench.cli`."""

from lrbench.cli import main

if __name__ == "__main__":
    main()
