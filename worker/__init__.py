"""passsync: customer events in, wallet passes kept true."""

__version__ = "0.1.0"
