"""Shared set-up of the project's own tests.

pytester's in-process runs restore ``sys.modules`` afterwards, which removes modules first
imported during the run; torch's C extension cannot be imported a second time in one process.
Importing torch, scipy.stats and transformers here, before any pytester run, keeps them loaded once.
"""

import scipy.stats  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401
