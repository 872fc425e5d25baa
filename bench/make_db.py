#!/usr/bin/env python3
"""
Deterministic SQLite database of a small blog for the data-engine benchmark.

    python3 make_db.py OUTPUT.db ROWS [--seed N] [--schema-only]
    python3 make_db.py --postgres URL ROWS [--seed N]

Creates OUTPUT.db (it must not exist) with Django-shaped tables:

* blog_category  (1 % of the rows): name, slug, description;
* blog_tag       (0.2 %): name;
* blog_article   (30 %): short articles (title, slug, ~300-character body,
  published datetime, views, is_public, category_id -> blog_category);
* blog_comment   (the rest): author, email, ~120-character body, created,
  approved, article_id -> blog_article.

ROWS is the total number of rows over all tables. Datetimes are to the
millisecond, the precision of Django's fixtures, so that a dump and a load
give back the same rows. --schema-only creates the
empty tables (the destination of a load). With --postgres, the same rows go
into the existing, empty tables of a PostgreSQL database (made by Django's
`migrate`: bench/django_pg) through `psql`'s COPY, as with SQLite. Standard library only.
"""
import argparse
import csv
import io
import os
import random
import sqlite3
import subprocess
import sys

SCHEMA = """
CREATE TABLE "blog_category" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "name" varchar(100) NOT NULL,
    "slug" varchar(100) NOT NULL UNIQUE,
    "description" text NOT NULL
);
CREATE TABLE "blog_tag" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "name" varchar(50) NOT NULL UNIQUE
);
CREATE TABLE "blog_article" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "title" varchar(200) NOT NULL,
    "slug" varchar(200) NOT NULL,
    "body" text NOT NULL,
    "published" datetime NOT NULL,
    "views" integer unsigned NOT NULL,
    "is_public" bool NOT NULL,
    "category_id" bigint NOT NULL REFERENCES "blog_category" ("id") DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX "blog_article_category_id" ON "blog_article" ("category_id");
CREATE TABLE "blog_comment" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "author" varchar(100) NOT NULL,
    "email" varchar(254) NOT NULL,
    "body" text NOT NULL,
    "created" datetime NOT NULL,
    "approved" bool NOT NULL,
    "article_id" bigint NOT NULL REFERENCES "blog_article" ("id") DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX "blog_comment_article_id" ON "blog_comment" ("article_id");
"""

TABLES = ["blog_category", "blog_tag", "blog_article", "blog_comment"]


def split(rows):
    categories = max(1, rows // 100)
    tags = max(1, rows // 500)
    articles = max(1, rows * 30 // 100)
    comments = max(0, rows - categories - tags - articles)
    return categories, tags, articles, comments


def words(rng, vocab, n):
    return " ".join(rng.choice(vocab) for _ in range(n))


def generate(rows, seed, micro):
    """(table, columns, row iterator) for each table, in dependency order.
    micro: the datetime fraction of article i (6 digits)."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkq"
    vocab = sorted({"".join(rng.choice(letters) for _ in range(2 + rng.randrange(8)))
                    for _ in range(4000)})
    n_cat, n_tag, n_art, n_com = split(rows)

    def categories():
        for i in range(1, n_cat + 1):
            yield (i, words(rng, vocab, 2).title(), "category-%d" % i, words(rng, vocab, 12))

    def tags():
        for i in range(1, n_tag + 1):
            yield (i, "tag-%d-%s" % (i, rng.choice(vocab)))

    def articles():
        for i in range(1, n_art + 1):
            title = words(rng, vocab, 4 + rng.randrange(6)).capitalize()
            yield (i, title, "%s-%d" % (title.lower().replace(" ", "-")[:180], i),
                   words(rng, vocab, 40 + rng.randrange(30)).capitalize() + ".",
                   # Without a fraction when it is zero, as Django stores it.
                   ("2024-%02d-%02d %02d:%02d:%02d.%06d" % (
                       1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, micro(i))).removesuffix(".000000"),
                   rng.randrange(100000), rng.random() < 0.8, 1 + rng.randrange(n_cat))

    def comments():
        for i in range(1, n_com + 1):
            name = rng.choice(vocab).capitalize()
            yield (i, name, "%s%d@example.org" % (name.lower(), i % 997),
                   words(rng, vocab, 15 + rng.randrange(15)) + ".",
                   "2025-%02d-%02d %02d:%02d:%02d" % (
                       1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 13) % 60),
                   rng.random() < 0.9, 1 + rng.randrange(n_art))

    # Generated lazily and in this order: the random stream is shared.
    yield "blog_category", ("id", "name", "slug", "description"), categories()
    yield "blog_tag", ("id", "name"), tags()
    yield "blog_article", ("id", "title", "slug", "body", "published", "views", "is_public",
                           "category_id"), articles()
    yield "blog_comment", ("id", "author", "email", "body", "created", "approved", "article_id"), comments()


def fill_postgres(url, rows, seed):
    """COPY the rows into the tables of an existing PostgreSQL database."""
    for table, columns, it in generate(rows, seed, lambda i: (i % 1000) * 1000):
        copy = "COPY %s (%s) FROM STDIN WITH (FORMAT csv)" % (table, ", ".join(columns))
        proc = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", copy],
                                stdin=subprocess.PIPE)
        out = io.TextIOWrapper(proc.stdin, encoding="utf-8", newline="")
        writer = csv.writer(out)
        times = [c in ("published", "created") for c in columns]
        for row in it:
            # Naive UTC datetimes in SQLite; timestamptz here.
            writer.writerow([v + "+00" if t else ("t" if v else "f") if isinstance(v, bool) else v
                             for v, t in zip(row, times)])
        out.close()
        if proc.wait() != 0:
            sys.exit("COPY into %s failed" % table)
    # Explicit ids: move each identity sequence past them, as loaddata does.
    resets = ";".join("SELECT setval(pg_get_serial_sequence('%s', 'id'), GREATEST(MAX(id), 1)) FROM %s"
                      % (t, t) for t in TABLES)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", resets],
                   check=True, stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?")
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schema-only", action="store_true")
    parser.add_argument("--postgres", metavar="URL", help="fill this PostgreSQL database instead")
    args = parser.parse_args()
    if args.postgres:
        fill_postgres(args.postgres, args.rows, args.seed)
        return
    if not args.output:
        parser.error("OUTPUT.db is needed without --postgres")
    if os.path.exists(args.output):
        sys.exit("refusing to overwrite %s" % args.output)

    tmp = args.output + ".part"
    if os.path.exists(tmp):
        os.unlink(tmp)
    conn = sqlite3.connect(tmp)
    conn.executescript(SCHEMA)
    if not args.schema_only:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            for table, columns, it in generate(args.rows, args.seed, lambda i: (i % 1000) * 1000):
                conn.executemany('INSERT INTO %s (%s) VALUES (%s)' % (
                    table, ", ".join(columns), ", ".join("?" * len(columns))), it)
    conn.close()
    os.replace(tmp, args.output)
    if not args.schema_only:
        print("%s: %d rows (%s)" % (args.output, args.rows, ", ".join(
            "%s %d" % (t, n) for t, n in zip(TABLES, split(args.rows)))))


if __name__ == "__main__":
    main()
