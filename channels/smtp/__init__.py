"""The SMTP channel (SPEC §7): aiosmtpd on its own thread, bridged to trio in `server.py`."""
