"""Comparing runs: per case, ratio, interval, p-value and verdict from the rounds
(:mod:`~lrbench.bench.comparison.compare`, statistics in :mod:`lrbench.bench.results.stats`), and
the comparison as text and Markdown (:mod:`~lrbench.bench.comparison.verdict_table`); one row's
time over another's in the same run with its interval (:mod:`~lrbench.bench.comparison.ratios`)."""
