"""``python -m eleanor_cloud.cli``: the same as the ``eleanor-cloud`` console script."""

from eleanor_cloud.cli import main

if __name__ == "__main__":
    main()
