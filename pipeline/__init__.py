"""mega-pipe pipeline."""
