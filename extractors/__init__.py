"""mega-pipe extractors."""
