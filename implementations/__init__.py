"""The implementations of the local relation op that ship with lrbench, one module each.

Installed as the package ``lrbench.impls`` (the folder keeps its place in the checkout).
Importing this package registers nothing: :mod:`lrbench.registry` imports the modules named in
``lrbench.registry.BUILTIN`` when the registry is first read, and each module calls
:func:`lrbench.registry.register` with an :class:`~lrbench.registry.Implementation` that states
the devices and dtypes it supports and why it cannot run elsewhere.
"""
