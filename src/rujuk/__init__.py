"""The rujuk command-line tool and local orchestration."""
