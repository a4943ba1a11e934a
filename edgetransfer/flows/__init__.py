"""Orchestration over the stages: the pipeline file, the sweep, the quickstart, the live check."""
