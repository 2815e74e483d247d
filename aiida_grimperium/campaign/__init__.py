"""CSV campaigns: one Group per campaign, its molecules run in batches by a controller the daemon runs."""
