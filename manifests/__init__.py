"""mega-pipe manifests."""
