"""A local PassKit Members-compatible server for trying and testing passsync without an account."""
