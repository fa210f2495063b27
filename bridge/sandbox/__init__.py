"""A stateful simulator of LionDesk v2, the LionDesk v1 partner endpoint and the Real
Geeks Incoming API, with fault knobs: what `bridge dev` and the end-to-end tests run
instead of the real vendors. Start it with `bridge sandbox`; see server.py for the URL layout."""
