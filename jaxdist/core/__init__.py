"""The worker axis and how workers talk: grids, collectives, layouts, declared state."""
