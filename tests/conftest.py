"""Shared set-up of the project's own tests.

pytester's in-process runs restore ``sys.modules`` afterwards, which removes modules first
imported during the run; torch's C extension cannot be imported a second time in one process.
Importing torch, scipy.stats and transformers here, before any pytester run, keeps them loaded once.
"""

import scipy.stats  # noqa: F401
import torch

# torch's profiler (the CPU memory accountant of every benchmark) imports inductor's config on
# its first use, and inductor registers a torch library that cannot be defined twice.
import torch._inductor.config  # noqa: F401
import transformers  # noqa: F401
