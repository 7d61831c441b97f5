"""`python -m benchmarks`: every format of a model in one table (see benchmarks/formats.py)."""

from benchmarks.formats import main

if __name__ == "__main__":
    raise SystemExit(main())
