from wallet_tui.cli import main

raise SystemExit(main())
