"""Parallel alignment corpus: pure construction functions and the Ray Data driver."""
