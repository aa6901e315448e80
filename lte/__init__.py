"""Learning to Edit (LTE) at cluster scale."""
__version__ = "0.1.0"
