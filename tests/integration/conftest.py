from tests.integration.gateway import gateway
from tests.integration.shop import shop

__all__ = ["gateway", "shop"]
