"""The PostgreSQL backend: the only modules that import `psycopg` or hold PostgreSQL SQL (import-linter checks)."""
