#!/usr/bin/env python3
"""
Deterministic SQLite database of a small blog for the data-engine benchmark.

    python3 make_db.py OUTPUT.db ROWS [--seed N] [--schema-only]

Creates OUTPUT.db (it must not exist) with Django-shaped tables:

* blog_category  (1 % of the rows): name, slug, description;
* blog_tag       (0.2 %): name;
* blog_article   (30 %): short articles (title, slug, ~300-character body,
  published datetime, views, is_public, category_id -> blog_category);
* blog_comment   (the rest): author, email, ~120-character body, created,
  approved, article_id -> blog_article.

ROWS is the total number of rows over all tables. --schema-only creates the
empty tables (the destination of a load). Standard library only.
"""
import argparse
import os
import random
import sqlite3
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schema-only", action="store_true")
    args = parser.parse_args()
    if os.path.exists(args.output):
        sys.exit("refusing to overwrite %s" % args.output)

    tmp = args.output + ".part"
    if os.path.exists(tmp):
        os.unlink(tmp)
    conn = sqlite3.connect(tmp)
    conn.executescript(SCHEMA)
    if not args.schema_only:
        rng = random.Random(args.seed)
        letters = "etaoinshrdlucmfwypvbgkq"
        vocab = sorted({"".join(rng.choice(letters) for _ in range(2 + rng.randrange(8)))
                        for _ in range(4000)})
        n_cat, n_tag, n_art, n_com = split(args.rows)
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(
                'INSERT INTO blog_category (id, name, slug, description) VALUES (?, ?, ?, ?)',
                ((i, words(rng, vocab, 2).title(), "category-%d" % i, words(rng, vocab, 12))
                 for i in range(1, n_cat + 1)))
            conn.executemany(
                'INSERT INTO blog_tag (id, name) VALUES (?, ?)',
                ((i, "tag-%d-%s" % (i, rng.choice(vocab))) for i in range(1, n_tag + 1)))

            def articles():
                for i in range(1, n_art + 1):
                    title = words(rng, vocab, 4 + rng.randrange(6)).capitalize()
                    yield (i, title, "%s-%d" % (title.lower().replace(" ", "-")[:180], i),
                           words(rng, vocab, 40 + rng.randrange(30)).capitalize() + ".",
                           "2024-%02d-%02d %02d:%02d:%02d.%06d" % (
                               1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000000),
                           rng.randrange(100000), rng.random() < 0.8, 1 + rng.randrange(n_cat))
            conn.executemany(
                'INSERT INTO blog_article (id, title, slug, body, published, views, is_public,'
                ' category_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', articles())

            def comments():
                for i in range(1, n_com + 1):
                    name = rng.choice(vocab).capitalize()
                    yield (i, name, "%s%d@example.org" % (name.lower(), i % 997),
                           words(rng, vocab, 15 + rng.randrange(15)) + ".",
                           "2025-%02d-%02d %02d:%02d:%02d" % (
                               1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 13) % 60),
                           rng.random() < 0.9, 1 + rng.randrange(n_art))
            conn.executemany(
                'INSERT INTO blog_comment (id, author, email, body, created, approved, article_id)'
                ' VALUES (?, ?, ?, ?, ?, ?, ?)', comments())
    conn.close()
    os.replace(tmp, args.output)
    if not args.schema_only:
        print("%s: %d rows (%s)" % (args.output, args.rows, ", ".join(
            "%s %d" % (t, n) for t, n in zip(TABLES, split(args.rows)))))


if __name__ == "__main__":
    main()
