"""Pieces of `tests/bench/compare.py`: the peers it starts, how it installs them, how it measures.

- `procs` — start a server in its own session, wait for it to answer, sample its RSS, stop it
  (and everything it spawned) by PID;
- `tools` — Debian packages through apt-get, npm peers into a cache directory outside the repo;
- `http_peers` — the router's journaled `data` endpoint, a bare hypercorn-trio app, Node-RED,
  n8n and adnanh/webhook, each answering the same POST;
- `smtp_peers` — the router, an aiosmtpd sink and Postfix's `smtp-sink`, driven by `smtp-source`.
"""
