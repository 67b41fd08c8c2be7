"""The benchmark module that ``lrbench run`` hands to pytest: one test per case of the matrix.

The cases are injected by :class:`lrbench.bench.measure.runner.MatrixPlugin` (``pytest_generate_tests``);
pytest-benchmark's ``benchmark`` fixture does the timing. Not collected by the test suite.
"""

from lrbench.bench.measure.runner import PLUGIN_KEY


def test_case(lrbench_case, benchmark, request):
    request.config.stash[PLUGIN_KEY].run(lrbench_case, benchmark)
