"""`python -m slotgen_ops` runs the slotgen CLI."""

from .cli.entry import main

main()
