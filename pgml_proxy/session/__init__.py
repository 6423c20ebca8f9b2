"""One client connection: two sans-I/O state machines (client side, upstream side) and the asyncio glue."""
