"""Message type bytes of protocol v3, as ints so they compare directly with ``buf[i]``."""

from typing import Final

# Frontend (client to server).
BIND: Final = ord("B")
CLOSE: Final = ord("C")
COPY_DATA: Final = ord("d")
COPY_DONE: Final = ord("c")
COPY_FAIL: Final = ord("f")
DESCRIBE: Final = ord("D")
EXECUTE: Final = ord("E")
FLUSH: Final = ord("H")
FUNCTION_CALL: Final = ord("F")
PARSE: Final = ord("P")
PASSWORD: Final = ord("p")  # also GSSResponse, SASLInitialResponse and SASLResponse
QUERY: Final = ord("Q")
SYNC: Final = ord("S")
TERMINATE: Final = ord("X")

# Backend (server to client).
AUTHENTICATION: Final = ord("R")
BACKEND_KEY_DATA: Final = ord("K")
ERROR_RESPONSE: Final = ord("E")
NEGOTIATE_PROTOCOL_VERSION: Final = ord("v")
NOTICE_RESPONSE: Final = ord("N")
PARAMETER_STATUS: Final = ord("S")
READY_FOR_QUERY: Final = ord("Z")

# What a client may send once authenticated, and while authenticating.
FRONTEND_READY_TYPES: Final = frozenset(
    (
        BIND,
        CLOSE,
        COPY_DATA,
        COPY_DONE,
        COPY_FAIL,
        DESCRIBE,
        EXECUTE,
        FLUSH,
        FUNCTION_CALL,
        PARSE,
        QUERY,
        SYNC,
        TERMINATE,
    )
)
FRONTEND_AUTH_TYPES: Final = frozenset((PASSWORD, TERMINATE))
