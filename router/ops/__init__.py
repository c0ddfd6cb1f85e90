"""Running the daemon: processes and their supervision, logs, metrics, systemd, sockets and TLS."""
