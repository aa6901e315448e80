"""Evaluation: metrics, protocols, baselines, reports."""
