"""The experiment core: specs, stores, the runner and its backends, resume, provenance, reports.

Paper packages (:mod:`factlab.experiments.wong2025`, ...) declare what is theirs by
subclassing :class:`~factlab.experiments.core.paper.Paper`; everything else lives here, and
nothing here imports a paper package.
"""
