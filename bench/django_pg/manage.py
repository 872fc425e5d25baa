#!/usr/bin/env python3
"""Django site of the PostgreSQL data benchmark (bench/data_pg.py): the tables of
bench/make_db.py as Django models, on the database named by
DISKETTE_BENCH_DATABASE_URL (postgres://USER@HOST:PORT/DB)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
