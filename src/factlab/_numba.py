"""numba, where it is installed, and the compile options factlab's kernels share.

The compiled kernels (:mod:`factlab.models.attention_kernel`, :mod:`factlab.tensors.cp_kernel`,
the optimizer updates of :mod:`factlab._updates`) import numba from here, so that one guard
decides whether they exist; each keeps a torch form for where numba is missing.
"""

from __future__ import annotations

try:  # numba is a dependency, but the torch forms must not need it
    import numba
    import numba.extending
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None
    njit = None

# Reassociation lets loops over long axes vectorise; no 'nnan'/'ninf' flags, so a NaN or
# infinite value still propagates (a diverged model or a rejected step is still seen).
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# error_model="numpy": a division by zero gives inf instead of a Python exception, whose
# check would stop every loop with a division from vectorising.
OPTIONS = dict(cache=True, fastmath=FASTMATH, error_model="numpy")


def available() -> bool:
    """Whether numba is importable here (the compiled kernels can run)."""
    return numba is not None


def version() -> str | None:
    """numba's version, for the provenance of results computed with it (None: absent)."""
    return numba.__version__ if numba is not None else None
