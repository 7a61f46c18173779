"""asv benchmarks of lstmcpu; see docs/benchmarks.md for how to run them."""
