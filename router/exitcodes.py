"""Exit codes of every `router` verb, `serve` included (sysexits.h where one fits). The unit's
RestartPreventExitStatus=78 keeps systemd from restarting a daemon whose config is wrong: it
stays wrong until someone edits it."""

OK = 0
NOT_FOUND = 1  # no such source, signal, record type or record; or an operation its state refuses
USAGE = 2  # argparse's own: an unknown option, a missing argument
EX_UNAVAILABLE = 69  # a listener cannot bind its address, the data dir or the database cannot be opened
EX_CONFIG = 78  # the config file is missing or invalid

EXIT_CODES = {
    OK: "success",
    NOT_FOUND: "not found (source, signal, record) or refused by its state",
    USAGE: "usage error (unknown option, missing argument)",
    EX_UNAVAILABLE: "unavailable: a listener cannot bind its address, the data dir or database cannot be opened",
    EX_CONFIG: "config error: the file is missing or invalid (systemd does not restart on it)",
}
