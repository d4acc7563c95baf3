"""Runtime glue shared by rujuk services."""
