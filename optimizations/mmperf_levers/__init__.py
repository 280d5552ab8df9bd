"""The optimization levers of Lee et al. (2024), one module each, behind one interface (``base.Lever``)."""
