from django.apps import AppConfig


class ShopAppConfig(AppConfig):
    # An app label holding an underscore: its tables are `shop_app_*`.
    name = "shop_app"
