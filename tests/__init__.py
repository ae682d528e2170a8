"""uniir test suite: one folder per package folder of uniir_cli."""
