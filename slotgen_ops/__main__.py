"""`python -m slotgen_ops` runs the slotgen CLI."""

from .cli.app import main

main()
