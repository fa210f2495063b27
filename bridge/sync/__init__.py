"""The sync core: what each Real Geeks event means for LionDesk, and the reverse poll."""
