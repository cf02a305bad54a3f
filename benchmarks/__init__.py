"""Speed benchmarks, run as modules (``python -m benchmarks.<name>``); not part of lth_core."""
