from pgml_proxy.cli import main

raise SystemExit(main())
