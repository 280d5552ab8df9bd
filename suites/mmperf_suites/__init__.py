"""The bundled benchmark suites: the four workloads of Lee et al. (2024) and their levers."""
