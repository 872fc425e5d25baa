"""
The data benchmark on PostgreSQL (part of `bench/run --only data`).

On a throw-away PostgreSQL cluster (tests/servers/start.sh), the tables of
bench/make_db.py are created by Django's `migrate` (bench/django_pg) and
filled with N and N/2 rows. Side by side, in one run:

  dump  diskette dump --no-storages  vs  manage.py dumpdata  vs  pg_dump -Fc --data-only
  load  diskette load --no-storages  vs  manage.py loaddata  vs  pg_restore --data-only

each load into a fresh copy of the migrated, empty schema. The loaded tables
are compared with the source (row counts and a hash of every row), and the
application's next insert is tried after each load.
"""
import os
import shutil
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
SITE = os.path.join(BENCH, "django_pg")
TABLES = ["blog_category", "blog_tag", "blog_article", "blog_comment"]


def pg_bin():
    found = sorted((d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int) \
        if os.path.isdir("/usr/lib/postgresql") else []
    return os.path.join("/usr/lib/postgresql", found[-1], "bin") if found else None


def start_server(h, wd):
    """Start a PostgreSQL cluster of our own; returns its admin URL."""
    d = os.path.join(wd, "pg-server")
    subprocess.run(["bash", os.path.join(REPO, "tests/servers/stop.sh"), d])
    shutil.rmtree(d, ignore_errors=True)
    out = h.sh(["bash", os.path.join(REPO, "tests/servers/start.sh"), d, "postgres"])
    h.SERVERS.append(Stopper(d))
    for line in out.splitlines():
        if line.startswith("export DISKETTE_TEST_POSTGRES_URL="):
            return line.split("=", 1)[1]
    h.die("tests/servers/start.sh printed no PostgreSQL URL")


class Stopper:
    """Stops the cluster with the harness's other servers."""

    def __init__(self, d):
        self.d = d

    def poll(self):
        return None

    def terminate(self):
        subprocess.run(["bash", os.path.join(REPO, "tests/servers/stop.sh"), self.d])

    def wait(self, timeout=None):
        return 0

    def kill(self):
        self.terminate()


def venv(h, wd):
    """A virtualenv with the pinned Django and psycopg."""
    v = os.path.join(wd, "django-pg-venv")
    req = os.path.join(SITE, "requirements.txt")
    stamp = os.path.join(v, "bench-requirements.txt")
    with open(req) as fh:
        wanted = fh.read()
    if not (os.path.exists(stamp) and open(stamp).read() == wanted):
        shutil.rmtree(v, ignore_errors=True)
        h.log("installing Django and psycopg into %s" % v)
        h.sh([sys.executable, "-m", "venv", v])
        h.sh([os.path.join(v, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check",
              "--no-input", "--quiet", "-r", req])
        shutil.copyfile(req, stamp)
    return os.path.join(v, "bin", "python")


def psql(h, url, sql):
    return h.sh(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]).strip()


def db_url(admin, name):
    return admin.rsplit("/", 1)[0] + "/" + name


def recreate(h, admin, name, template=None):
    psql(h, admin, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    psql(h, admin, "CREATE DATABASE %s%s" % (name, " TEMPLATE %s" % template if template else ""))
    return db_url(admin, name)


def digest(h, url):
    """Per table: row count and an MD5 of every row in id order."""
    return {t: psql(h, url, "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY id)), '')"
                            " FROM %s x" % t) for t in TABLES}


def django(py, url, *args):
    return ["env", "DISKETTE_BENCH_DATABASE_URL=" + url, py, os.path.join(SITE, "manage.py")] + list(args)


def section(args, exe, runner, report, h):
    wd = os.path.join(args.workdir, "data-pg")
    os.makedirs(wd, exist_ok=True)
    bindir = pg_bin()
    if not bindir or not shutil.which("psql"):
        report.note("PostgreSQL is not installed (Debian: postgresql): the PostgreSQL data benchmark did not run.")
        return
    admin = start_server(h, wd)
    py = venv(h, wd)
    full, half = args.pg_rows, args.pg_rows // 2
    sizes = [full, half]
    empty = recreate(h, admin, "bench_empty")
    h.sh(django(py, empty, "migrate", "--run-syncdb", "-v0"))
    sources = {}
    for n in sizes:
        h.log("making a PostgreSQL database of %d rows" % n)
        url = recreate(h, admin, "bench_src_%d" % n, "bench_empty")
        h.sh([sys.executable, h.MAKE_DB, "--postgres", url, str(n)])
        psql(h, url, "ANALYZE")
        sources[n] = url
    conf = os.path.join(wd, "conf")
    out = os.path.join(wd, "out")
    os.makedirs(conf, exist_ok=True)
    files = {}

    def dk_config(name, url):
        path = os.path.join(conf, name + ".toml")
        h.write_config(path, dump_path=out, apps=True)
        with open(path) as fh:
            text = fh.read()
        # The harness writes SQLite URLs; this section's database is PostgreSQL.
        text = text.replace("[[apps]]", "[data]\ndatabase_url = %s\n\n[[apps]]" % h.toml_str(url), 1)
        with open(path, "w") as fh:
            fh.write(text)
        return path

    dump = []
    for n in sizes:
        cfg = dk_config("dump-%d" % n, sources[n])
        dest = os.path.join(out, "dk-%d" % n)
        files["dk", n] = os.path.join(wd, "dk-%d.tar.gz" % n)

        def keep(r, warm, dest=dest, n=n):
            if warm:
                shutil.copyfile(os.path.join(dest, "bench.tar.gz"), files["dk", n])

        dump.append(("diskette dump %d rows" % n, lambda dest=dest: h.fresh_dir(dest),
                     lambda cfg=cfg, dest=dest: [exe, "--config", cfg, "-q", "dump", "--no-storages",
                                                 "--destination", dest, "--filename", "bench.tar.gz"], keep))
    files["dj", full] = os.path.join(wd, "dumpdata-%d.json" % full)
    files["pg", full] = os.path.join(wd, "pg_dump-%d.pgc" % full)
    dump.append(("dumpdata %d rows" % full, lambda: None,
                 lambda: django(py, sources[full], "dumpdata", "blog", "-o", files["dj", full]), None))
    dump.append(("pg_dump %d rows" % full, lambda: None,
                 lambda: [os.path.join(bindir, "pg_dump"), "-Fc", "--data-only", "-t", "blog_*",
                          "-f", files["pg", full], sources[full]], None))
    results = h.run_rounds(runner, dump, args.rounds)

    targets = {}
    load = []

    def add_load(name, key, n, cmd):
        target = "bench_%s_%d" % (key, n)
        targets[name] = (n, db_url(admin, target))
        load.append((name, lambda target=target: recreate(h, admin, target, "bench_empty"), cmd, None))

    for n in sizes:
        cfg = dk_config("load-%d" % n, db_url(admin, "bench_dk_%d" % n))
        add_load("diskette load %d rows" % n, "dk", n,
                 lambda cfg=cfg, n=n: [exe, "--config", cfg, "-q", "load", "--no-storages", files["dk", n]])
    add_load("loaddata %d rows" % full, "dj", full,
             lambda: django(py, db_url(admin, "bench_dj_%d" % full), "loaddata", files["dj", full]))
    add_load("pg_restore %d rows" % full, "pg", full,
             lambda: [os.path.join(bindir, "pg_restore"), "--data-only", "-d", db_url(admin, "bench_pg_%d" % full),
                      files["pg", full]])
    checks = []

    def verify():
        for name, (n, url) in targets.items():
            same = digest(h, url) == digest(h, sources[n])
            checks.append(("%s: loaded tables equal the source (counts and row hashes)" % name, same))
            # The application's next insert needs sequences past the loaded ids.
            r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c",
                                "INSERT INTO blog_tag (name) VALUES ('after-load')"], capture_output=True)
            checks.append(("%s: the application can insert after the load" % name, r.returncode == 0))

    results.update(h.run_rounds(runner, load, args.rounds, verify))
    report.detail("data on PostgreSQL", results)
    shutil.rmtree(out, ignore_errors=True)
    write_report(args, report, h, results, checks, files, full, half)


def write_report(args, report, h, results, checks, files, full, half):
    def rate(name, n):
        return n / h.med(results[name], "wall")

    rows = []
    for op, ours, django_name, pg_name in (
            ("dump", "diskette dump", "dumpdata", "pg_dump"),
            ("load", "diskette load", "loaddata", "pg_restore")):
        ref_dj = rate("%s %d rows" % (django_name, full), full)
        ref_pg = rate("%s %d rows" % (pg_name, full), full)
        for name, n in (("%s %d rows" % (ours, full), full), ("%s %d rows" % (ours, half), half),
                        ("%s %d rows" % (django_name, full), full), ("%s %d rows" % (pg_name, full), full)):
            runs = results[name]
            r = rate(name, n)
            rows.append([name, h.fmt_s(h.med(runs, "wall")), h.fmt_s(h.med(runs, "cpu")),
                         h.fmt_mib(h.med(runs, "rss")), "%.0f" % r, "%.2f" % (r / ref_dj), "%.2f" % (r / ref_pg)])
    sizes = "diskette %.1f MB, dumpdata %.1f MB, pg_dump %.1f MB" % (
        os.path.getsize(files["dk", full]) / 1e6, os.path.getsize(files["dj", full]) / 1e6,
        os.path.getsize(files["pg", full]) / 1e6)
    report.add("### Data engine on PostgreSQL\n\n"
               "The tables of `bench/make_db.py` created by Django's `migrate` (`bench/django_pg`) on a "
               "throw-away PostgreSQL cluster on loopback, filled with %d and %d rows. Dumps: "
               "`diskette dump --no-storages`, `manage.py dumpdata blog`, `pg_dump -Fc --data-only`; loads into "
               "a fresh copy of the empty schema: `diskette load --no-storages`, `manage.py loaddata`, "
               "`pg_restore --data-only`. Output of %d rows: %s. Median of %d rounds; ratios are rows/s "
               "over the rows/s of Django's command and of pg_dump/pg_restore of the same operation.\n\n"
               % (full, half, full, sizes, args.rounds)
               + h.table(["operation", "wall s", "CPU s", "peak RSS MiB", "rows/s", "× Django", "× pg_dump/restore"],
                         rows)
               + "\n\nChecks:\n\n" + "\n".join("- %s: %s" % (t, "ok" if ok else "**FAILED**") for t, ok in checks)
               + "\n")
    for op in ("dump", "load"):
        rf = max(r["rss"] for r in results["diskette %s %d rows" % (op, full)])
        rh = max(r["rss"] for r in results["diskette %s %d rows" % (op, half)])
        report.target("PostgreSQL data %s: memory flat in row count (%d rows ≤ 1.1 × %d rows + 4 MiB)"
                      % (op, full, half), rf <= 1.1 * rh + 4 * h.MIB, "%.1f → %.1f MiB" % (rh / h.MIB, rf / h.MIB))
    for op, django_name in (("dump", "dumpdata"), ("load", "loaddata")):
        ours = rate("diskette %s %d rows" % (op, full), full)
        theirs = rate("%s %d rows" % (django_name, full), full)
        report.target("PostgreSQL data %s faster than Django's %s" % (op, django_name), ours > theirs,
                      "%.0f vs %.0f rows/s = %.1f×" % (ours, theirs, ours / theirs))
    report.target("PostgreSQL data round trips identical, inserts work after each load",
                  all(ok for _, ok in checks), "%d/%d" % (sum(ok for _, ok in checks), len(checks)))
