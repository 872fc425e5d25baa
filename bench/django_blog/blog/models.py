"""The tables of bench/make_db.py as Django models."""
from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField()


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Article(models.Model):
    title = models.CharField(max_length=200)
    slug = models.CharField(max_length=200)
    body = models.TextField()
    published = models.DateTimeField()
    views = models.PositiveIntegerField()
    is_public = models.BooleanField()
    category = models.ForeignKey(Category, on_delete=models.CASCADE)


class Comment(models.Model):
    author = models.CharField(max_length=100)
    email = models.EmailField(max_length=254)
    body = models.TextField()
    created = models.DateTimeField()
    approved = models.BooleanField()
    article = models.ForeignKey(Article, on_delete=models.CASCADE)
