"""rujuk routing service."""
