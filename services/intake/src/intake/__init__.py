"""rujuk intake service."""
