"""interlock's benchmark harness (`make bench`): real processes, real sockets, loopback only.

Not a test suite: timings never belong in tests. Run `python -m tests.bench.run --help`.
"""
