"""Exit codes of every ``bratskit`` sub-command (documented in the README and cli.py).

0  everything succeeded / is valid
1  at least one case failed or is invalid (the others were still processed)
2  usage error (bad flag or value)
3  the input or output folder as a whole is unusable (missing, empty, not writable)
4  the sub-command is not available in this installation or version
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
