"""Real Geeks ⇄ LionDesk bridge."""

__version__ = "0.1.0"
