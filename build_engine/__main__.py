from build_engine.cli import main

raise SystemExit(main())
