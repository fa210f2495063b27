"""Pure translation between Real Geeks and LionDesk shapes: no I/O in this package."""
