"""``python -m cwconsumer`` is the same program as ``cwconsumer``."""

from cwconsumer.cli import main

raise SystemExit(main())
