"""`python -m bridge.cli`: the same command as `bridge` (the dev stack starts its children this way)."""

from bridge.cli import main

main()
