"""rujuk console: server-rendered pages for operators, partners, the coordinator and auditors."""
