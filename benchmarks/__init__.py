"""Benchmarks and reports: each module is one command (``python -m benchmarks.NAME``) that
writes a CompressAI-style JSON, a PNG plot and a Markdown report into
``benchmarks/results/<dataset>/``."""
