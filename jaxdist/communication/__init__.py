"""How workers reach each other without an all-reduce: topologies, gossip, compression."""
