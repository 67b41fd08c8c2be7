"""The report's tables that set rows of one run against each other, one section a module: the
peers, the floor (LR-Net against ResNet-50), the backward against the forward, the accuracy gate's
margins. :mod:`lrbench.bench.results.report` assembles them."""
