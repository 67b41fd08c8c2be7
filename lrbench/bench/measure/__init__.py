"""Measuring the matrix: the runner (pytest-benchmark on CPU, CUDA events on a GPU), the accuracy
gate, what gets timed, the compile axis, memory, the machine and its limits."""
