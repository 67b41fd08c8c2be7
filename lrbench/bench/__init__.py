"""The benchmark harness: the matrix of cases, timing with pytest-benchmark, records and reports.

Times the implementations of the local relation op of LR-Net (Hu, Zhang, Xie, Lin, "Local Relation
Networks for Image Recognition", ICCV 2019, arXiv:1904.11491), the ``LocalRelation2d`` layer, the
3x3 convolution it replaces and whole networks, after checking each against the float64 reference.

Entry points: :func:`lrbench.bench.measure.runner.run_matrix` (``lrbench run``),
:func:`lrbench.bench.results.report.write_report` (``lrbench report``),
:func:`lrbench.bench.comparison.compare.compare_runs` (``lrbench compare``),
:func:`lrbench.bench.ab.interleave.run_ab` (``lrbench ab``) and
:func:`lrbench.bench.results.records.merge_runs` (``lrbench merge``).
"""
