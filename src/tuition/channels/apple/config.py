"""The App Store channel's settings, loaded once at start-up.

Apple signs every transaction and notification as a JWS whose ``x5c`` chain must end in
one of the configured root certificates (Apple Root CA - G3 in production; a test CA in
the tests). The roots are files, DER (``.cer``, as Apple publishes them) or PEM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

# The environments whose data Apple signs. Xcode and LocalTesting data are not signed by
# the App Store (the library skips verification for them), so they are refused here.
ENVIRONMENTS = ("Production", "Sandbox")
DEFAULT_COMMISSION = Decimal("0.30")


@dataclass(frozen=True, slots=True)
class AppleProduct:
    """What one App Store product id sells: a Tuition product (a top-up pack or a
    membership) and the commission Apple keeps on it (0.30, or 0.15 under the Small
    Business Program and for subscriptions after their first year)."""

    product_id: str
    commission: Decimal = DEFAULT_COMMISSION


@dataclass(frozen=True, slots=True)
class AppleConfig:
    bundle_id: str
    environment: str
    root_certificates: tuple[bytes, ...] = field(repr=False)  # DER
    app_apple_id: int | None = None
    products: Mapping[str, AppleProduct] = field(default_factory=dict)
    # OCSP revocation checks of the chain (network calls to Apple); verification then
    # uses the current time instead of the data's signedDate.
    online_checks: bool = True


def load_apple_config(
    *,
    bundle_id: str,
    environment: str,
    root_certificate_files: list[str],
    app_apple_id: int | None,
    products: Mapping[str, Mapping[str, str]],
    online_checks: bool,
) -> AppleConfig:
    """Read and check the settings; ValueError naming ``apple.<field>`` on a problem."""
    if not bundle_id.strip():
        raise ValueError("apple.bundle_id: is not set; give the app's bundle id")
    if environment not in ENVIRONMENTS:
        raise ValueError(
            f"apple.environment: {environment!r} is not one of {', '.join(ENVIRONMENTS)}"
        )
    if environment == "Production" and app_apple_id is None:
        raise ValueError("apple.app_apple_id: is required in the Production environment")
    if not root_certificate_files:
        raise ValueError("apple.root_certificates: give at least one root certificate file")
    roots = tuple(_root(name) for name in root_certificate_files)
    return AppleConfig(
        bundle_id=bundle_id,
        environment=environment,
        root_certificates=roots,
        app_apple_id=app_apple_id,
        products={key: _product(key, value) for key, value in products.items()},
        online_checks=online_checks,
    )


def _root(name: str) -> bytes:
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise ValueError(f"apple.root_certificates: cannot read {name!r}: {exc.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError(
            f"apple.root_certificates: {name!r} is not an X.509 certificate (DER or PEM)"
        ) from None
    return cert.public_bytes(Encoding.DER)


def _product(key: str, value: Mapping[str, str]) -> AppleProduct:
    where = f"apple.products: {key!r}"
    product_id = value.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise ValueError(f"{where}: give the Tuition product_id it sells")
    raw = value.get("commission", str(DEFAULT_COMMISSION))
    try:
        commission = Decimal(str(raw))
    except ArithmeticError:
        raise ValueError(f"{where}: commission {raw!r} is not a decimal") from None
    if not commission.is_finite() or not Decimal(0) <= commission < Decimal(1):
        raise ValueError(f"{where}: commission {raw!r} must be at least 0 and below 1")
    unknown = sorted(set(value) - {"product_id", "commission"})
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}")
    return AppleProduct(product_id=product_id, commission=commission)
