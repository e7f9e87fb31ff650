"""The worker axis and how workers talk: grids, collectives, layouts, declared state; XLA:CPU
tuning for tiny models (`cpu`)."""
