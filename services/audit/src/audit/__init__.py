"""rujuk audit service."""
