"""``python -m benchmarks [--quick] [--only SECTION ...] [--json PATH]``."""

from benchmarks.run import main

raise SystemExit(main())
