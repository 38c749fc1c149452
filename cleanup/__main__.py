"""Allow ``python -m cleanup``."""

from cleanup.cli import main

if __name__ == "__main__":
    main()
