from mantis_py.cli import main

raise SystemExit(main())
