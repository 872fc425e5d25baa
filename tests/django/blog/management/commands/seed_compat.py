"""Fill the database with the sample rows the compatibility tests compare."""
from datetime import datetime, timezone

from django.contrib.auth.models import Group, Permission, User
from django.contrib.sites.models import Site
from django.core.management.base import BaseCommand
from django.db import transaction

from blog.models import Article, Category


class Command(BaseCommand):
    help = "Create sample categories, articles, users and a group."

    @transaction.atomic
    def handle(self, *args, **options):
        Site.objects.filter(pk=1).update(domain="compat.example.test", name="Compat")

        news = Category.objects.create(name="News")
        culture = Category.objects.create(name="Café & Culture — ünïcödé ✓")
        Category.objects.create(name='Quotes "double" and \'single\'')

        samples = [
            ("Hello, world", "First post.", news, (2024, 1, 1, 15, 8, 0, 0), ""),
            (
                "Crème brûlée 🍮",
                "Multi-line\nbody with\ttabs, \"quotes\" and \\ backslashes.",
                culture,
                (2024, 3, 5, 12, 34, 56, 789123),
                "articles/crème 1.png",
            ),
            ("日本語のタイトル", "本文", culture, (2025, 2, 3, 17, 53, 9, 500000), ""),
            ("No category", "", None, (2023, 12, 31, 23, 59, 59, 0), "articles/a b.png"),
        ]
        for title, body, category, when, cover in samples:
            Article.objects.create(
                title=title,
                body=body,
                category=category,
                created=datetime(*when, tzinfo=timezone.utc),
                cover=cover,
            )

        editors = Group.objects.create(name="Editors")
        editors.permissions.set(
            Permission.objects.filter(
                content_type__app_label="blog",
                codename__in=["add_article", "change_article"],
            )
        )
        admin = User.objects.create_superuser(
            "admin", "admin@example.test", "admin-password"
        )
        admin.groups.add(editors)
        writer = User.objects.create_user("écrivain", "writer@example.test", "pw")
        writer.user_permissions.add(
            Permission.objects.get(content_type__app_label="blog", codename="add_category")
        )

        self.stdout.write(
            "seeded {} categories, {} articles, {} users".format(
                Category.objects.count(), Article.objects.count(), User.objects.count()
            )
        )
