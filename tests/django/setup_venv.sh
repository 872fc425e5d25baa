#!/bin/sh
# Create a Python virtualenv with the real Django and Diskette 0.6.0 pinned in
# requirements.txt, for tests/django_compat.rs.
#
#   tests/django/setup_venv.sh DIR        (PYTHON=python3.12 to pick the interpreter)
#
# Then run the tests with DISKETTE_TEST_DJANGO_VENV=DIR (without it, the tests
# build their own copy under the cargo target directory).
# Needs Python >= 3.11 with the venv module (Debian: python3-venv) and access
# to PyPI (or a mirror set with PIP_INDEX_URL).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --requirement "$here/requirements.txt"
"$venv/bin/python" -c 'import django, diskette; print("Django", django.get_version(), "/ diskette", diskette.__version__)'
# Marks the venv as complete, with the requirements it was built from.
cp "$here/requirements.txt" "$venv/diskette-compat-requirements.txt"
