"""`python -m runtime` is the `pspnet-rt` command."""

from runtime.cli import main

raise SystemExit(main())
