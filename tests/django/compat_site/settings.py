"""
A minimal Django project configured with Diskette 0.6.0, used by
tests/django_compat.rs to check that archives move between the original
Diskette and ours in both directions.

Everything lives inside the project directory (database, media, dumps), so a
copy of this directory is an independent site.
"""
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Diskette's defaults for every DISKETTE_* setting; the ones below override them.
from diskette.settings import *  # noqa: F401,F403

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "diskette-compat-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.sites",
    "diskette",
    "blog",
    "shop_app",
]

# What the admin's system checks ask for.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
# PostgreSQL instead when DJANGO_DATABASE_URL names one
# (postgres://USER[:PASSWORD]@HOST:PORT/NAME), through psycopg.
if os.environ.get("DJANGO_DATABASE_URL"):
    _url = urlsplit(os.environ["DJANGO_DATABASE_URL"])
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
    }

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# Overridable so a test can run the project in a non-UTC zone.
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
SITE_ID = 1
MEDIA_ROOT = BASE_DIR / "media"

# Diskette: the same application definitions as the reference archives in
# tests/fixtures/diskette-0.6.0 (sites and auth with natural foreign keys).
DISKETTE_ADMIN_ENABLED = False
DISKETTE_APPS = [
    ["django.contrib.sites", {"natural_foreign": True, "models": ["sites"]}],
    [
        "django.contrib.auth",
        {"natural_foreign": True, "models": ["auth.Group", "auth.User"]},
    ],
    ["blog", {"models": ["blog"]}],
]
DISKETTE_STORAGES = [MEDIA_ROOT]
DISKETTE_STORAGES_EXCLUDES = ["*.tmp"]
DISKETTE_DUMP_PATH = BASE_DIR / "var" / "dumps"
# Storages are archived relative to the working directory when dumping (run
# manage.py from BASE_DIR) and restored relative to this directory.
DISKETTE_LOAD_STORAGES_PATH = BASE_DIR
