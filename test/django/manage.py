#!/usr/bin/env python3
"""The Django side of test/django-migration.test.ts: `manage.py migrate` into the
database named by DJANGO_DB_NAME (PostgreSQL on DJANGO_DB_HOST, default 127.0.0.1)."""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "protoguard_test.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
