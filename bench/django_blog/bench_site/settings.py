"""
The Django project of the PostgreSQL data benchmark (bench/pg_data.py): the
models of bench/make_db.py's tables, on the database DJANGO_DATABASE_URL
names (postgres://USER[:PASSWORD]@HOST:PORT/NAME).
"""
import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "diskette-bench-only"
DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "blog"]
_url = urlsplit(os.environ["DJANGO_DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"
