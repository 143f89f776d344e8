"""``python -m procalign ...`` is the ``procalign`` command."""

from procalign.cli.main import main

raise SystemExit(main())
