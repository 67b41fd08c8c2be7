"""Planning the matrix: the axes, the presets, one case and its expansion, the plan of a run, and the
closed-form multiply-adds and bytes of each case."""
