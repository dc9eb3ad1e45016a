"""CLI command groups, registered on the `passsync` app by worker/cli.py."""
