"""The simulator's own test CA for UnionPay: root, middle and signing certificates.

The real gateway signs with a certificate issued by CFCA's root through a middle
certificate; the simulator does the same with certificates of its own, which a simulated
deployment configures as its root and middle. The merchant's signing certificate (the
PFX) is issued by the same middle certificate. :func:`issue` is also what tests use to
make a certificate from another CA, an expired one or one with a wrong CN.

A deployment keeps the whole set in one file (:meth:`TestCA.dump` / :meth:`TestCA.load`)
so every process of a demo agrees on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tuition.channels.unionpay.config import UNIONPAY_CN

# Wide enough for any frozen test clock and any demo; a test wanting an expired
# certificate issues one with its own dates.
NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)
SIGNING_CN = f"041@Z0000000000001@{UNIONPAY_CN}@00000001"
MERCHANT_PFX_PASSWORD = "000000"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue(
    common_name: str,
    key: rsa.RSAPrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: rsa.RSAPrivateKey,
    ca: bool,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate for ``key`` named ``common_name``, issued by ``issuer`` (None: self)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tuition Simulator Test CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class TestCA:
    root: x509.Certificate
    root_key: rsa.RSAPrivateKey
    middle: x509.Certificate
    middle_key: rsa.RSAPrivateKey
    signing: x509.Certificate  # UnionPay's signing certificate, CN naming UnionPay
    signing_key: rsa.RSAPrivateKey

    __test__ = False  # not a pytest class

    @classmethod
    def create(cls, *, signing_cn: str = SIGNING_CN) -> TestCA:
        root_key, middle_key, signing_key = new_key(), new_key(), new_key()
        root = issue("Simulator UnionPay Root", root_key, issuer=None, issuer_key=root_key, ca=True)
        middle = issue(
            "Simulator UnionPay Middle", middle_key, issuer=root, issuer_key=root_key, ca=True
        )
        signing = issue(signing_cn, signing_key, issuer=middle, issuer_key=middle_key, ca=False)
        return cls(root, root_key, middle, middle_key, signing, signing_key)

    def issue_signing(
        self,
        *,
        common_name: str = SIGNING_CN,
        not_before: datetime = NOT_BEFORE,
        not_after: datetime = NOT_AFTER,
    ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """Another signing certificate from this CA's middle certificate."""
        key = new_key()
        certificate = issue(
            common_name,
            key,
            issuer=self.middle,
            issuer_key=self.middle_key,
            ca=False,
            not_before=not_before,
            not_after=not_after,
        )
        return certificate, key

    def merchant_pfx(
        self, mer_id: str, key: rsa.RSAPrivateKey, password: str = MERCHANT_PFX_PASSWORD
    ) -> bytes:
        """A merchant signing certificate for ``key`` in a PFX, as UnionPay hands one out."""
        certificate = issue(
            f"041@Z{mer_id}@{mer_id}@00000001",
            key,
            issuer=self.middle,
            issuer_key=self.middle_key,
            ca=False,
        )
        return pkcs12.serialize_key_and_certificates(
            b"acp",
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(password.encode("utf-8")),
        )

    def pem(self, which: str) -> bytes:
        certificate: x509.Certificate = getattr(self, which)
        return certificate.public_bytes(serialization.Encoding.PEM)

    def dump(self) -> bytes:
        def key_pem(key: rsa.RSAPrivateKey) -> str:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")

        data = {name: self.pem(name).decode("ascii") for name in ("root", "middle", "signing")} | {
            f"{name}_key": key_pem(getattr(self, f"{name}_key"))
            for name in ("root", "middle", "signing")
        }
        return json.dumps(data, indent=1).encode("utf-8")

    @classmethod
    def load(cls, data: bytes) -> TestCA:
        raw = json.loads(data)

        def cert(name: str) -> x509.Certificate:
            return x509.load_pem_x509_certificate(raw[name].encode("ascii"))

        def key(name: str) -> rsa.RSAPrivateKey:
            loaded = serialization.load_pem_private_key(raw[name].encode("ascii"), None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            return loaded

        return cls(
            cert("root"),
            key("root_key"),
            cert("middle"),
            key("middle_key"),
            cert("signing"),
            key("signing_key"),
        )


def expired_window(now: datetime) -> tuple[datetime, datetime]:
    """Validity dates that ended a day before ``now`` (for tests of an expired certificate)."""
    return now - timedelta(days=400), now - timedelta(days=1)
