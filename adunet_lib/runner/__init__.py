"""Params files, the run folder, and the papermill runner behind ``adunet reproduce``."""
