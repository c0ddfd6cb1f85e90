"""Signals from the journal to runs: the dispatcher, the journal's trio face, the doorbell between processes, retention, the deletion sink."""
