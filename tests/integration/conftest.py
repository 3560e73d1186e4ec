from tests.integration.shop import shop

__all__ = ["shop"]
