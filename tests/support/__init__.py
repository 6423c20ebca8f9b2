"""Test harness: a real PostgreSQL, a real proxy process, and a fault-injecting TCP relay."""
