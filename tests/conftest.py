"""Test-wide settings.

Property tests draw their examples from a fixed seed by default (hypothesis profile
``fixed``), so a run is reproducible and CI never fails on an example no earlier run saw.
Set ``FACTLAB_HYPOTHESIS=explore`` to draw fresh examples each run and search for new
counterexamples (hypothesis prints how to reproduce any it finds).
"""

import os

from hypothesis import settings

settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("FACTLAB_HYPOTHESIS", "fixed"))
