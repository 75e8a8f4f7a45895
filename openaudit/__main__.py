from openaudit.cli import main

raise SystemExit(main())
