"""Models covering what the built-in engine must write as Django does: a label
with an underscore, foreign keys, many-to-many fields (one to itself), a
natural key, a custom table name and fields of every serialized kind.

Defined in the order of their migration, so that the content type ids follow
the registration order (as in a project whose models are declared in the order
`makemigrations` sorts them)."""
from django.db import models


class Archived(models.Model):
    """A model whose table does not follow the `{app_label}_{model}` naming."""
    title = models.CharField(max_length=100)
    when = models.DateTimeField(null=True)

    class Meta:
        db_table = "legacy_archived"


class SupplierManager(models.Manager):
    def get_by_natural_key(self, slug):
        return self.get(slug=slug)


class Supplier(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)

    objects = SupplierManager()

    def natural_key(self):
        return (self.slug,)


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Product(models.Model):
    name = models.CharField(max_length=100)
    supplier = models.ForeignKey(
        Supplier, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Declared in name order, as the migration creates their tables: the
    # schema does not tell the declaration order.
    related = models.ManyToManyField("self", symmetrical=False, blank=True)
    tags = models.ManyToManyField(Tag, blank=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    created = models.DateTimeField()
    released = models.DateField(null=True, blank=True)
    opening = models.TimeField(null=True, blank=True)
    uid = models.UUIDField(null=True, blank=True)
    attributes = models.JSONField(null=True, blank=True)
    active = models.BooleanField(default=True)
    weight = models.FloatField(null=True, blank=True)
    note = models.CharField(max_length=100, null=True, blank=True)


class Review(models.Model):
    """Keyed by a UUID, pointing at a product and at a supplier's natural key."""
    id = models.UUIDField(primary_key=True)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    body = models.TextField()
    stars = models.PositiveSmallIntegerField()
