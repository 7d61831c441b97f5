from pspnet.search.cli import main

raise SystemExit(main())
