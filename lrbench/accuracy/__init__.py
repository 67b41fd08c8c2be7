"""Accuracy limits owned by the suite, and the parts of a large case the float64 reference checks."""
