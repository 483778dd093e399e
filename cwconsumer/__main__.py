"""``python -m cwconsumer`` is the same program as ``cwconsumer``."""

from cwconsumer.entry import main

raise SystemExit(main())
