"""Pure protocol code of idnode: identifiers, records, codes, messages and wire codecs.

Nothing in this package performs I/O or reads a clock: bytes and the current time come in as
arguments, messages and bytes go out (the sans-I/O style of h11 and wsproto). Every transport,
store, client and load generator of the project speaks through it.
"""
