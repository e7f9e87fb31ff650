"""`python -m launch --config configs/X.py --workdir DIR [--config.section.field=value ...]`."""
