"""`python -m maint` is the same as the `maint` console script."""

from maint.cli import main

raise SystemExit(main())
