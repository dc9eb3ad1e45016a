"""Alembic migrations, shipped inside the package so `passsync db upgrade` works anywhere."""
