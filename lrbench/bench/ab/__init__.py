"""``lrbench ab``: two revisions of the code, each in its own git worktree, run interleaved in
separate processes (:mod:`~lrbench.bench.ab.revisions`, :mod:`~lrbench.bench.ab.launch`,
:mod:`~lrbench.bench.ab.interleave`)."""
