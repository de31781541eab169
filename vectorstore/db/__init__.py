"""The SQLite / SQLAlchemy layer: schema, engine set-up and the repository of reads and writes."""
