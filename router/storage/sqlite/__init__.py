"""The SQLite backend: the only modules that import `sqlite3` or hold SQL (import-linter checks)."""
