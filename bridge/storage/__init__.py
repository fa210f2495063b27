"""Everything the bridge keeps in Redis: connections, key names and the records built on them."""
