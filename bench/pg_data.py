"""
The `pgdata` section of bench/run: the built-in engine on PostgreSQL against
Django's dumpdata/loaddata and pg_dump/pg_restore, on the same tables.

The tables are bench/make_db.py's, created by Django's own `migrate` from the
models of bench/django_blog and filled with make_db.py's rows (through
`psql COPY`). Each dump contender reads the source database; each load
contender writes into a migrated target whose tables are emptied before
every run. A load is checked against the source (counts and row hashes,
datetimes compared to the millisecond, the precision of Django's JSON form).

Needs `--postgres URL` (a role that may create databases), and for the
Django contenders `--django-python` (a Python with Django and psycopg, such
as the virtualenv of tests/django/setup_venv.sh). Standard library only.
"""
import os
import shutil
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.join(HERE, "django_blog")
TABLES = ["blog_category", "blog_tag", "blog_article", "blog_comment"]
DATETIMES = {"published", "created"}
BOOLEANS = {"is_public", "approved"}


def db_url(admin, name):
    return admin.rsplit("/", 1)[0] + "/" + name


def psql(url, sql, stdin=None):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, PGTZ="UTC"))
    if r.returncode != 0:
        raise RuntimeError("psql failed on %s: %s" % (sql[:200], r.stderr.decode(errors="replace")))
    return r.stdout.decode()


def copy_text(value):
    if value is None:
        return "\\N"
    return (str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def fill(sqlite_path, url):
    """Copy make_db.py's rows into the migrated tables, then their sequences."""
    conn = sqlite3.connect(sqlite_path)
    for table in TABLES:
        cur = conn.execute('SELECT * FROM "%s" ORDER BY id' % table)
        cols = [c[0] for c in cur.description]
        lines = []
        for row in cur:
            lines.append("\t".join(copy_text(("t" if v else "f") if c in BOOLEANS else v)
                                   for c, v in zip(cols, row)))
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        psql(url, "COPY %s (%s) FROM STDIN" % (table, ", ".join(cols)), stdin=data)
        psql(url, "SELECT setval(pg_get_serial_sequence('%s', 'id'), coalesce(max(id), 1), max(id) IS NOT NULL) "
                  "FROM %s" % (table, table))
    conn.close()


def digest(url):
    out = {}
    for table in TABLES:
        cols = psql(url, "SELECT string_agg(CASE WHEN column_name IN ('published', 'created') "
                         "THEN format('date_trunc(''milliseconds'', %%I)', column_name) "
                         "ELSE quote_ident(column_name) END, ', ' ORDER BY ordinal_position) "
                         "FROM information_schema.columns WHERE table_name = '%s'" % table).strip()
        out[table] = psql(url, "SELECT count(*), md5(string_agg(md5(row(%s)::text), '' ORDER BY id)) FROM %s"
                          % (cols, table)).strip()
    return out


def section(args, exe, runner, report, h):
    """h: the helpers of bench/run (sh, run_rounds, med, fmt_s, fmt_mib, table, log, MIB, MAKE_DB)."""
    admin = args.postgres
    wd = os.path.join(args.workdir, "pgdata")
    os.makedirs(wd, exist_ok=True)
    site = os.path.join(wd, "site")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(PROJECT, site, ignore=shutil.ignore_patterns("__pycache__"))
    python = args.django_python
    if not python:
        report.note("pgdata: no --django-python, Django's dumpdata/loaddata are not measured")

    def manage(url, *argv):
        return (["env", "DJANGO_DATABASE_URL=" + url, "PYTHONDONTWRITEBYTECODE=1", python,
                 os.path.join(site, "manage.py")] + list(argv))

    sizes = [args.rows, args.rows // 2]
    names = {n: "diskette_bench_src_%d" % n for n in sizes}
    names["target"] = "diskette_bench_target"
    for name in names.values():
        psql(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        psql(admin, "CREATE DATABASE %s" % name)
    if python:
        h.sh(manage(db_url(admin, names["target"]), "makemigrations", "blog", "-v", "0"))
    for key, name in names.items():
        url = db_url(admin, name)
        if python:
            h.sh(manage(url, "migrate", "--no-input", "-v", "0"))
        else:
            # Without Django, the same tables from make_db.py's schema, typed for PostgreSQL.
            psql(url, SCHEMA)
        if key != "target":
            p = os.path.join(wd, "blog-%d.db" % key)
            if not os.path.exists(p):
                h.sh([sys.executable, h.MAKE_DB, p, str(key)])
            fill(p, url)
    target = db_url(admin, names["target"])
    sources = {n: db_url(admin, names[n]) for n in sizes}
    expected = {n: digest(sources[n]) for n in sizes}
    out = os.path.join(wd, "out")
    os.makedirs(out, exist_ok=True)

    def config(name, url):
        path = os.path.join(wd, name + ".toml")
        with open(path, "w") as fh:
            fh.write('[data]\ndatabase_url = "%s"\n\n[dump]\npath = "%s"\n\n[[apps]]\nname = "blog"\n'
                     'models = ["blog"]\n' % (url, out))
        return path

    def files(n):
        return {"ours": os.path.join(out, "ours-%d.tar.gz" % n), "django": os.path.join(out, "django-%d.json" % n),
                "pg": os.path.join(out, "pg-%d.dump" % n)}

    dumps = []
    for n in sizes:
        f = files(n)
        cfg = config("dump-%d" % n, sources[n])
        dumps.append(("diskette dump %d" % n, lambda: None,
                      lambda cfg=cfg, f=f: [exe, "--config", cfg, "-q", "dump", "--no-storages", "--destination",
                                            out, "--filename", os.path.basename(f["ours"])], None))
        if python:
            cmd = manage(sources[n], "dumpdata", "blog", "-o", f["django"])
            dumps.append(("dumpdata %d" % n, lambda: None, lambda cmd=cmd: cmd, None))
        dumps.append(("pg_dump %d" % n, lambda: None,
                      lambda n=n, f=f: ["pg_dump", "-Fc", "--data-only", "-t", "blog_*", "-f", f["pg"], sources[n]],
                      None))
    results = h.run_rounds(runner, dumps, args.rounds)

    checks = []

    def empty_target():
        psql(target, "TRUNCATE %s RESTART IDENTITY" % ", ".join(TABLES))

    def check(what, n):
        def after(_r, warm):
            if warm:
                checks.append(("%s: loaded tables equal the source" % what, digest(target) == expected[n]))
        return after

    loads = []
    lcfg = config("load", target)
    for n in sizes:
        f = files(n)
        loads.append(("diskette load %d" % n, empty_target,
                      lambda f=f: [exe, "--config", lcfg, "-q", "load", "--no-storages", f["ours"]],
                      check("diskette load %d" % n, n)))
        if python:
            cmd = manage(target, "loaddata", f["django"])
            loads.append(("loaddata %d" % n, empty_target, lambda cmd=cmd: cmd, check("loaddata %d" % n, n)))
        loads.append(("pg_restore %d" % n, empty_target,
                      lambda f=f: ["pg_restore", "--data-only", "--disable-triggers", "-d", target, f["pg"]],
                      check("pg_restore %d" % n, n)))
    results.update(h.run_rounds(runner, loads, args.rounds))
    report.detail("pgdata", results)
    rows = []
    for name, runs in results.items():
        n = int(name.rsplit(" ", 1)[1])
        w = h.med(runs, "wall")
        rows.append([name, h.fmt_s(w), h.fmt_s(h.med(runs, "cpu")), h.fmt_mib(h.med(runs, "rss")), "%.0f" % (n / w)])
    report.add("### Data engine on PostgreSQL\n\nbench/make_db.py's tables of %d rows (and %d), created by Django's "
               "`migrate` (bench/django_blog) on PostgreSQL %s, filled with make_db.py's rows. Dumps: "
               "`diskette dump --no-storages` (archive), `manage.py dumpdata blog -o FILE`, "
               "`pg_dump -Fc --data-only -t 'blog_*'`; loads into the migrated tables emptied before each run: "
               "`diskette load`, `manage.py loaddata`, `pg_restore --data-only`. Median of %d rounds.\n\n"
               % (sizes[0], sizes[1], psql(admin, "SHOW server_version").strip(), args.rounds)
               + h.table(["operation", "wall s", "CPU s", "peak RSS MiB", "rows/s"], rows)
               + "\n\nChecks:\n\n" + "\n".join("- %s: %s" % (t, "ok" if ok else "**FAILED**") for t, ok in checks)
               + "\n")
    full, half = sizes
    for op in ("dump", "load"):
        rf = max(r["rss"] for r in results["diskette %s %d" % (op, full)])
        rh = max(r["rss"] for r in results["diskette %s %d" % (op, half)])
        report.target("PostgreSQL data %s: memory flat in row count (%d rows ≤ 1.1 × %d rows + 4 MiB)"
                      % (op, full, half), rf <= 1.1 * rh + 4 * h.MIB, "%.1f → %.1f MiB" % (rh / h.MIB, rf / h.MIB))
    report.target("PostgreSQL data loads identical to the source", all(ok for _, ok in checks),
                  "%d/%d" % (sum(ok for _, ok in checks), len(checks)))
    for name in names.values():
        psql(admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


# make_db.py's schema typed as Django's PostgreSQL backend types it, for runs
# without Django.
SCHEMA = """
CREATE TABLE blog_category (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name varchar(100) NOT NULL, slug varchar(100) NOT NULL UNIQUE, description text NOT NULL);
CREATE TABLE blog_tag (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name varchar(50) NOT NULL UNIQUE);
CREATE TABLE blog_article (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    title varchar(200) NOT NULL, slug varchar(200) NOT NULL, body text NOT NULL,
    published timestamp with time zone NOT NULL, views integer NOT NULL CHECK (views >= 0),
    is_public boolean NOT NULL,
    category_id integer NOT NULL REFERENCES blog_category (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE blog_comment (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    author varchar(100) NOT NULL, email varchar(254) NOT NULL, body text NOT NULL,
    created timestamp with time zone NOT NULL, approved boolean NOT NULL,
    article_id integer NOT NULL REFERENCES blog_article (id) DEFERRABLE INITIALLY DEFERRED);
"""
