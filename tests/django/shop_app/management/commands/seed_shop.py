"""Fill the site with rows of every kind the built-in engine must write as
Django does (after `seed_compat`'s sites, auth and blog rows)."""
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from shop_app.models import Archived, Product, Review, Supplier, Tag


def utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


class Command(BaseCommand):
    help = "Create suppliers, tags, products, reviews, users, groups, sessions, log entries."

    @transaction.atomic
    def handle(self, *args, **options):
        call_command("seed_compat", stdout=self.stdout)

        dupre = Supplier.objects.create(slug="ateliers-dupre", name="Ateliers Dupré")
        Supplier.objects.create(slug="nord", name="Nord")
        kiso = Supplier.objects.create(slug="kiso", name="木曽")
        # Tags created out of name order, one deleted: primary keys with a gap.
        t_red = Tag.objects.create(name="red")
        t_gone = Tag.objects.create(name="gone")
        t_blue = Tag.objects.create(name="blue")
        t_green = Tag.objects.create(name="green")
        t_gone.delete()

        chair = Product.objects.create(
            name="Chaise ✓",
            supplier=dupre,
            price=Decimal("12.50"),
            created=utc(2024, 3, 5, 12, 34, 56, 999999),
            released=date(2024, 3, 1),
            opening=time(9, 30, 15, 789123),
            uid=uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
            attributes={"couleur": "crème", "sizes": [1, 2.5, None, True], "日本": {"k": "説明"}},
            active=True,
            weight=0.1,
            note=None,
        )
        table = Product.objects.create(
            name='Table "ronde"',
            supplier=None,
            price=Decimal("3.00"),
            created=utc(2024, 1, 1, 15, 8, 0, 500),
            released=None,
            opening=time(18, 0),
            uid=None,
            attributes="just a string",
            active=False,
            weight=1e-05,
            note="",
        )
        lamp = Product.objects.create(
            name="Lampe",
            supplier=kiso,
            price=Decimal("123456.78"),
            created=utc(2025, 2, 3, 17, 53, 9),
            released=date(2025, 2, 3),
            opening=None,
            uid=uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e"),
            attributes=None,
            active=True,
            weight=None,
            note="Multi-line\nnote\twith tabs",
        )
        # Links added out of primary key order.
        chair.tags.set([t_green, t_red])
        lamp.tags.set([t_blue, t_red, t_green])
        chair.related.set([lamp, table])
        lamp.related.set([chair])

        Review.objects.create(
            id=uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            product=chair, body="Très bien 👍", stars=5,
        )
        Review.objects.create(
            id=uuid.UUID("16fd2706-8baf-433b-82eb-8c7fada847da"),
            product=lamp, body="", stars=2,
        )
        Archived.objects.create(title="Old", when=utc(2020, 5, 17, 8, 0, 0, 123000))
        Archived.objects.create(title="Undated", when=None)

        shop_perms = Permission.objects.filter(content_type__app_label="shop_app")
        clerks = Group.objects.create(name="Clerks")
        # Out of the permissions' default ordering (app label, model, codename).
        clerks.permissions.set(
            [
                shop_perms.get(codename="view_tag"),
                shop_perms.get(codename="add_product"),
                Permission.objects.get(codename="view_user"),
                shop_perms.get(codename="add_tag"),
            ]
        )
        auditors = Group.objects.create(name="Auditors")
        clerk = User.objects.create_user(
            "clerk", "clerk@example.test", "pw", first_name="Zoé",
            last_login=utc(2024, 6, 30, 23, 59, 59, 1),
        )
        clerk.groups.set([clerks, auditors])
        clerk.user_permissions.set(
            [shop_perms.get(codename="delete_review"), shop_perms.get(codename="change_supplier")]
        )
        admin = User.objects.get(username="admin")
        admin.groups.add(clerks)

        Session.objects.create(
            session_key="k" * 32,
            session_data="e30:1tEsT:signature",
            expire_date=utc(2030, 1, 1, 0, 0, 0, 250000),
        )
        product_type = ContentType.objects.get_for_model(Product)
        LogEntry.objects.create(
            user=admin, content_type=product_type, object_id=str(chair.pk),
            object_repr=str(chair.name)[:200], action_flag=ADDITION,
            change_message='[{"added": {}}]',
            action_time=utc(2024, 3, 5, 12, 35, 0, 42),
        )
        LogEntry.objects.create(
            user=clerk, content_type=None, object_id=None,
            object_repr="free text", action_flag=CHANGE, change_message="",
            action_time=utc(2024, 3, 6, 8, 0),
        )
        self.stdout.write("seeded the shop")
