"""One module per ``lrbench`` command, each a thin click command over the library (it parses, calls
and prints); :mod:`lrbench.cli` collects them into the group. Options that several commands share
are in :mod:`lrbench.commands.options`."""
