"""mega-pipe model."""
