"""pytest-mmperf: performance regressions of multimodal generation model inference, as pytest tests.

Importing this package imports neither torch nor transformers; the measurement backends that need
them load only when a benchmark runs.
"""

__version__ = "0.1.0"
