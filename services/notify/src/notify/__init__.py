"""rujuk notify service."""
