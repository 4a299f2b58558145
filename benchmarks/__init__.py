"""Load generators for the voice site; see benchmarks/README.md."""
