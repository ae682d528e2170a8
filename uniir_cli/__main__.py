"""`python -m uniir_cli` (and so `accelerate launch -m uniir_cli ...`) runs the CLI."""

from uniir_cli.app import main

if __name__ == "__main__":
    main()
