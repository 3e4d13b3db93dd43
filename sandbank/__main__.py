"""``python -m sandbank`` runs the CLI."""

from sandbank.cli import main

main()
