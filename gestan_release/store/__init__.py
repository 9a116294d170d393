"""The database: engines and migrations, every table, the ledger (release and delivery books)."""
