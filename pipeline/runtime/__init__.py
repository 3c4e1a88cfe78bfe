"""The pipeline runtime: frames, clocks, processors, observers, LLM wrappers, tools and the runner.

It imports neither `pipeline.bench` nor `pipeline.serving` (tests/test_layering.py checks it).
"""
