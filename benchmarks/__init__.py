"""eleanor_cloud benchmarks (the project's issue #9): ``make bench`` or ``python -m benchmarks``.

Every figure is a median over interleaved rounds, compared with a baseline measured in
the same run, so a noisy shared machine moves both sides alike. Request counts are
exact and deterministic; timings are not, and no test asserts them.
"""
