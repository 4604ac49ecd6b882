"""``python -m menas_zoo`` runs the CLI."""

from menas_zoo.cli import main

main()
