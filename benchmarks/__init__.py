"""facelake benchmarks: ``./dev bench NAME [options]`` (``python -m benchmarks``); results in RESULTS.md."""
