"""A local Passcreator-compatible server for trying passsync without an account."""
