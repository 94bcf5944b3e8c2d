"""Benchmarks for otel_aspects: per-call cost against baselines and peers, and scale.

Run ``python -m benchmarks.run`` (``make bench``) for the full suite, or
``python -m benchmarks.run --smoke`` (``make bench-smoke``) for a few-second check
that every case runs and that no count is lost. See ``benchmarks/README.md``.
"""
