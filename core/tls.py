"""Transport security: the hub's own CA and certificates, the agent's pinned TLS context and the first-contact CA fetch."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import http.client
import ipaddress
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LOGGER = logging.getLogger(__name__)

CA_PEM_PATH = "/api/v1/ca.pem"
CA_PEM_CONTENT_TYPE = "application/x-pem-file"

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "hub.pem"  # leaf followed by the CA: the chain the hub presents
SERVER_KEY_FILE = "hub.key"
USER_CHAIN_FILE = "user-chain.pem"  # a user's certificate with their CA appended, when it lacked it
LOCK_FILE = ".lock"

DEFAULT_CA_DAYS = 3652
DEFAULT_SERVER_DAYS = 825
DEFAULT_CLIENT_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_NAMES = ("localhost",)
DEFAULT_ADDRESSES = ("127.0.0.1", "::1")

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
MAX_CA_DOCUMENT_BYTES = 64 * 1024
FETCH_USER_AGENT = "roost-agent"


class TLSConfigError(Exception):
    """The hub's TLS material cannot be created or used; the message says what to do."""


class HubCAError(Exception):
    """The CA a hub presented at first contact cannot be trusted (or none could be read)."""


# ------------------------------------------------------------------ fingerprints


def _first_cert(data: bytes) -> x509.Certificate:
    """The first certificate in PEM (possibly a bundle) or DER bytes; ValueError if there is none."""
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
        return certs[0]
    return x509.load_der_x509_certificate(data)


def cert_fingerprint(cert: bytes | x509.Certificate) -> str:
    """SHA-256 of a certificate's DER encoding, lowercase hex; takes PEM, DER or a parsed certificate."""
    if not isinstance(cert, x509.Certificate):
        cert = _first_cert(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def ca_fingerprint(cert_pem: bytes) -> str:
    """The fingerprint agents pin: SHA-256 of the (first) certificate's DER, 64 lowercase hex digits."""
    return cert_fingerprint(cert_pem)


def parse_fingerprint(text: str) -> str:
    """A full SHA-256 fingerprint as 64 lowercase hex digits, from any form Roost prints.

    Accepts plain hex, hex grouped with colons or spaces (any case), an optional
    `sha256:` prefix, or the 43-character unpadded base64url form made by
    `compact_fingerprint` (short enough for a join token). A shortened
    fingerprint is not accepted: it is for eyes, not for pinning.
    """
    value = text.strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:") :]
    hexed = "".join(value.replace(":", " ").split()).lower()
    if len(hexed) == 64 and all(c in "0123456789abcdef" for c in hexed):
        return hexed
    if len(value) == 43:
        try:
            raw = base64.urlsafe_b64decode(value + "=")
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32 and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value:
            return raw.hex()
    raise ValueError("not a SHA-256 fingerprint (64 hex digits, or the 43-character compact form)")


def compact_fingerprint(fp: str) -> str:
    """The 43-character unpadded base64url form of a fingerprint, for join tokens and URLs."""
    return base64.urlsafe_b64encode(bytes.fromhex(parse_fingerprint(fp))).rstrip(b"=").decode()


def short_fingerprint(fp: str) -> str:
    """The first 16 hex digits in groups of four ("3f2a 9c01 ..."), for people to compare; never for pinning."""
    hexed = parse_fingerprint(fp)[:16]
    return " ".join(hexed[i : i + 4] for i in range(0, 16, 4))


def verify_fingerprint(expected: str, actual: str) -> bool:
    """Whether two fingerprints (any form `parse_fingerprint` accepts) are the same, compared in constant time."""
    try:
        want, got = parse_fingerprint(expected), parse_fingerprint(actual)
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(want.encode(), got.encode())


# ------------------------------------------------------------------ files


def write_private_file(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write a file atomically (temp file in the same folder, then rename) with the given mode from the start."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(tls_dir: Path) -> Iterator[None]:
    # A hub starting while `roost join-token create` runs must not make two CAs.
    fd = os.open(tls_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise TLSConfigError(f"TLS key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")


# ------------------------------------------------------------------ building certificates


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 key: what every TLS client and server understands."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Roost"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def build_ca(common_name: str, *, days: int = DEFAULT_CA_DAYS, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign end-entity certificates only (CA:TRUE, pathlen 0)."""
    key = key or generate_key()
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    days: int,
    public_key: ec.EllipticCurvePublicKey,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _host_entries(hostnames: Sequence[str], addresses: Sequence[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Split and normalise what the hub should be reachable as: DNS names and IP addresses, defaults included."""
    names: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []

    def add_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if not ip.is_unspecified and ip not in ips:  # a bind address of 0.0.0.0 is no name for the hub
            ips.append(ip)

    for raw in (*hostnames, *DEFAULT_NAMES):
        text = raw.strip().strip("[]").rstrip(".")
        if not text:
            continue
        try:
            add_ip(ipaddress.ip_address(text))
            continue
        except ValueError:
            pass
        try:
            name = text.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise TLSConfigError(f"hub TLS: {raw!r} is not a usable host name; fix the hub's hostnames setting") from None
        if name not in names:
            names.append(name)
    for raw in (*addresses, *DEFAULT_ADDRESSES):
        text = raw.strip().strip("[]")
        if not text:
            continue
        try:
            add_ip(ipaddress.ip_address(text))
        except ValueError:
            raise TLSConfigError(f"hub TLS: {raw!r} is not an IP address; fix the hub's addresses setting") from None
    return names, ips


def build_server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    hostnames: Sequence[str] = (),
    addresses: Sequence[str] = (),
    days: int = DEFAULT_SERVER_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A hub server certificate (serverAuth) for the given names plus localhost, 127.0.0.1 and ::1."""
    names, ips = _host_entries(hostnames, addresses)
    san = x509.SubjectAlternativeName([*(x509.DNSName(n) for n in names), *(x509.IPAddress(ip) for ip in ips)])
    key = generate_key()
    common_name = next((n for n in names if n != "localhost"), "Roost hub")
    cert = _leaf(ca_cert, ca_key, common_name=common_name[:64], usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days, public_key=key.public_key(), san=san)
    return cert, key


def build_client_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, node_id: str, *, days: int = DEFAULT_CLIENT_DAYS, public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | None]:
    """A client certificate (clientAuth, CN = node id); a fresh key unless the node's own public key is given."""
    if not node_id or len(node_id) > 64:
        raise ValueError("a node id for a client certificate is 1 to 64 characters")
    key = None if public_key is not None else generate_key()
    public = public_key if public_key is not None else key.public_key()  # type: ignore[union-attr]
    cert = _leaf(ca_cert, ca_key, common_name=node_id, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days, public_key=public)
    return cert, key


# ------------------------------------------------------------------ checking certificates


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def chains_to(leaf: x509.Certificate, anchor: x509.Certificate, intermediates: Sequence[x509.Certificate] = ()) -> bool:
    """Whether leaf's signatures lead to anchor (through the given intermediates), or leaf is the anchor itself."""
    if leaf == anchor:
        return True
    current, unused = leaf, list(intermediates)
    for _ in range(len(unused) + 1):
        if _issued_by(current, anchor):
            return True
        step = next((c for c in unused if c != current and _issued_by(current, c)), None)
        if step is None:
            return False
        unused.remove(step)
        current = step
    return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _has_usage(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        return usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _san_entries(cert: x509.Certificate) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)}, set(san.get_values_for_type(x509.IPAddress))


def _same_key(cert: x509.Certificate, key: object) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, TypeError):
        return False


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------ the hub side


@dataclass(frozen=True)
class HubTLS:
    """The hub's TLS material: what it presents, what agents pin, and the CA that signs node client certificates.

    `ca_cert_pem` is the trust anchor agents pin (fingerprint `ca_fingerprint`):
    the hub's own CA, or with a user's certificate their `ca_file` (else the
    certificate itself). Client certificates are always signed by the hub's own
    CA (`client_ca_path`), which exists even when the server certificate is the
    user's.
    """

    ca_cert_pem: bytes
    ca_fingerprint: str
    cert_path: Path  # the chain the server presents: leaf first
    key_path: Path
    ca_path: Path  # the file the anchor came from (its first certificate)
    user_supplied: bool
    intermediates_pem: bytes = b""  # certificates between the leaf and the anchor, for first-contact checks
    client_ca_path: Path | None = None  # defaults to ca_path
    client_ca_key_path: Path | None = None

    @property
    def ca_document(self) -> bytes:
        """What the hub serves, unauthenticated, at GET /api/v1/ca.pem: the anchor first, then any intermediates."""
        return self.ca_cert_pem + self.intermediates_pem

    def server_context(self, *, require_client_cert: bool = False, optional_client_cert: bool = False) -> ssl.SSLContext:
        """A TLS >= 1.2 server context presenting our chain; with client certificates, only our CA's are accepted.

        `require_client_cert` refuses a handshake without a valid client
        certificate; `optional_client_cert` asks for one and verifies it when
        given (the handler then decides; a browser on the same port still gets
        in). Require wins when both are set.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as err:
            raise TLSConfigError(f"hub TLS: cannot load certificate {self.cert_path} with key {self.key_path}: {err}") from None
        if require_client_cert or optional_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata=self._client_ca_pem().decode("ascii"))
        return ctx

    def _client_ca_pem(self) -> bytes:
        path = self.client_ca_path or (None if self.user_supplied else self.ca_path)
        if path is None:
            raise TLSConfigError("hub TLS: no CA for client certificates; create this HubTLS with ensure_hub_tls")
        return path.read_bytes()

    def _client_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self.client_ca_path is None or self.client_ca_key_path is None:
            raise TLSConfigError("hub TLS: no CA to sign client certificates; create this HubTLS with ensure_hub_tls")
        cert = _first_cert(self.client_ca_path.read_bytes())
        key = serialization.load_pem_private_key(self.client_ca_key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TLSConfigError(f"hub TLS: {self.client_ca_key_path} is not an ECDSA key")
        return cert, key

    def issue_client_cert(self, node_id: str, *, days: int = DEFAULT_CLIENT_DAYS) -> tuple[bytes, bytes]:
        """A fresh ECDSA P-256 key and a clientAuth certificate (CN = node_id) signed by the hub's CA: (cert_pem, key_pem)."""
        ca_cert, ca_key = self._client_ca()
        cert, key = build_client_cert(ca_cert, ca_key, node_id, days=days)
        assert key is not None
        return cert_pem(cert), key_pem(key)

    def sign_client_csr(self, csr_pem: bytes, node_id: str, *, node_key: str | None = None, days: int = DEFAULT_CLIENT_DAYS) -> bytes:
        """A client certificate for the key in a node's CSR (see `client_key_and_csr`); the hub never sees that key.

        The CSR's subject is ignored: the certificate names node_id, which the
        caller has already authenticated. With ``node_key`` (the node's base64
        Ed25519 identity key) the CSR must be for exactly that key, so a
        certificate is only ever issued to the key that proved itself.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise ValueError("not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise ValueError("the certificate signing request is not signed by its own key")
        public = csr.public_key()
        if node_key is not None:
            if csr_key(csr_pem.decode("ascii", "replace")) != node_key:
                raise ValueError("the certificate signing request is not for this node's identity key")
        elif not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise ValueError("a client certificate key must be ECDSA P-256")
        ca_cert, ca_key = self._client_ca()
        cert, _ = build_client_cert(ca_cert, ca_key, node_id, days=days, public_key=public)
        return cert_pem(cert)

    def client_cert_node_id(self, peercert_der: bytes | None) -> str | None:
        """The node id in a client certificate the hub's CA issued and that is valid now; None for anything else.

        Pass `ssl_object.getpeercert(binary_form=True)`. This only says which
        node the certificate was issued to: whether that node is still trusted
        (not revoked) is the caller's question.
        """
        if not peercert_der:
            return None
        try:
            cert = x509.load_der_x509_certificate(peercert_der)
            ca_cert = _first_cert(self._client_ca_pem())
        except (ValueError, OSError, IndexError, TLSConfigError):
            return None
        now = _now()
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            return None
        if _is_ca(cert) or not _has_usage(cert, ExtendedKeyUsageOID.CLIENT_AUTH) or not _issued_by(cert, ca_cert):
            return None
        return _common_name(cert)


def _load_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The hub's own CA from tls_dir; None on a first start; TLSConfigError when it is there but unusable."""
    cert_path, key_path = tls_dir / CA_CERT_FILE, tls_dir / CA_KEY_FILE
    if not cert_path.exists() and not key_path.exists():
        return None
    repair = (
        f"restore {cert_path} and {key_path} from a backup, or delete both to create a new CA "
        "(every paired agent must then be paired again)"
    )
    if not cert_path.exists() or not key_path.exists():
        missing = cert_path if not cert_path.exists() else key_path
        raise TLSConfigError(f"hub TLS: {missing} is missing; {repair}")
    _check_private(key_path)
    try:
        cert = _first_cert(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, IndexError) as err:
        raise TLSConfigError(f"hub TLS: the CA in {tls_dir} cannot be read ({err}); {repair}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_key(cert, key):
        raise TLSConfigError(f"hub TLS: {key_path} is not the key of {cert_path}; {repair}")
    if cert.not_valid_after_utc < _now() + dt.timedelta(days=365):
        _LOGGER.warning("the hub CA %s expires on %s; plan to make a new one and re-pair agents", cert_path, cert.not_valid_after_utc.date())
    return cert, key


def _server_cert_problem(tls_dir: Path, ca_cert: x509.Certificate, names: list[str], ips: list) -> str | None:
    """Why the stored server certificate must be issued again, or None when it is good."""
    cert_path, key_path = tls_dir / SERVER_CERT_FILE, tls_dir / SERVER_KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        return "there is none"
    _check_private(key_path)
    try:
        cert = _first_cert(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, IndexError):
        return "the stored one cannot be read"
    if not _same_key(cert, key):
        return "the stored key does not match it"
    if not _issued_by(cert, ca_cert):
        return "the stored one was not issued by this CA"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return f"it expires on {cert.not_valid_after_utc.date()}"
    have_names, have_ips = _san_entries(cert)
    missing = [n for n in names if n not in have_names] + [str(ip) for ip in ips if ip not in have_ips]
    if missing:
        return "it does not cover " + ", ".join(missing)
    return None


def _read_user_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"hub TLS: cannot read the {what} {path}: {err.strerror or err}; check the path and that the roost user may read it") from None


def _user_tls(
    tls_dir: Path, cert_file: Path, key_file: Path, ca_file: Path | None, own_ca: tuple[Path, Path]
) -> HubTLS:
    cert_file, key_file = Path(cert_file), Path(key_file)
    cert_data = _read_user_file(cert_file, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError:
        raise TLSConfigError(f"hub TLS: {cert_file} holds no PEM certificate; give the certificate (leaf first, then intermediates) in PEM form") from None
    leaf = chain[0]
    key_data = _read_user_file(key_file, "private key")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSConfigError(f"hub TLS: {key_file} is encrypted; give an unencrypted key (e.g. `openssl pkey -in {key_file} -out hub.key`)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(f"hub TLS: {key_file} holds no PEM private key") from None
    if not _same_key(leaf, key):
        raise TLSConfigError(f"hub TLS: the key {key_file} does not match the certificate {cert_file}; give the key the certificate was issued for")
    if key_file.stat().st_mode & 0o007:
        _LOGGER.warning("hub TLS key %s is readable by every user on this host; consider chmod 640 or 600", key_file)
    if leaf.not_valid_after_utc <= _now():
        raise TLSConfigError(f"hub TLS: the certificate {cert_file} expired on {leaf.not_valid_after_utc.date()}; renew it")
    if leaf.not_valid_after_utc - _now() < RENEW_BEFORE:
        _LOGGER.warning("hub TLS certificate %s expires on %s; renew it", cert_file, leaf.not_valid_after_utc.date())

    served_path = cert_file
    if ca_file is not None:
        ca_file = Path(ca_file)
        try:
            anchor = _first_cert(_read_user_file(ca_file, "CA certificate"))
        except (ValueError, IndexError):
            raise TLSConfigError(f"hub TLS: {ca_file} holds no PEM certificate; give the CA certificate that issued {cert_file}") from None
        if not chains_to(leaf, anchor, chain[1:]):
            raise TLSConfigError(
                f"hub TLS: {cert_file} was not issued by the CA in {ca_file}; give the issuing CA, "
                "and put any intermediate certificates after the leaf in the certificate file"
            )
        if anchor not in chain:  # present the anchor too, so clients can see it
            served_path = tls_dir / USER_CHAIN_FILE
            served = cert_data.rstrip(b"\n") + b"\n" + cert_pem(anchor)
            if not served_path.exists() or served_path.read_bytes() != served:
                write_private_file(served_path, served)
        anchor_path = ca_file
    else:
        anchor, anchor_path = leaf, cert_file
    intermediates = b"".join(cert_pem(c) for c in chain[1:] if c != anchor)
    tls = HubTLS(
        ca_cert_pem=cert_pem(anchor),
        ca_fingerprint=cert_fingerprint(anchor),
        cert_path=served_path,
        key_path=key_file,
        ca_path=anchor_path,
        user_supplied=True,
        intermediates_pem=intermediates,
        client_ca_path=own_ca[0],
        client_ca_key_path=own_ca[1],
    )
    tls.server_context()  # let OpenSSL have its say now rather than at the first connection
    return tls


def _prepare_dir(tls_dir: Path) -> Path:
    tls_dir = Path(tls_dir)
    try:
        tls_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        if tls_dir.stat().st_mode & 0o077:
            os.chmod(tls_dir, PRIVATE_DIR_MODE)
    except OSError as err:
        raise TLSConfigError(f"hub TLS: cannot use {tls_dir}: {err.strerror or err}; check the data directory's owner and permissions") from None
    return tls_dir


def ensure_hub_tls(
    tls_dir: Path,
    *,
    hostnames: list[str],
    addresses: list[str],
    cert_file: Path | None = None,
    key_file: Path | None = None,
    ca_file: Path | None = None,
    hub_id: str = "",
) -> HubTLS:
    """The hub's TLS material: created on the first start, reused after, renewed when it must be.

    Without cert_file/key_file, tls_dir (0700) holds the hub's CA (ECDSA P-256,
    CA:TRUE pathlen 0, 10 years) and a server certificate (825 days) for
    `hostnames` and `addresses` plus localhost, 127.0.0.1 and ::1; keys are
    0600. The server certificate is issued again (same CA, so pins hold) when
    it expires within 30 days, does not cover every requested name, or is
    missing or broken. A missing or broken CA is never replaced silently.

    With cert_file/key_file the user's certificate is presented instead;
    agents pin ca_file when given, else the certificate itself. The hub's own
    CA is still made, to sign node client certificates.

    Blocking (file I/O, key generation): from async code use asyncio.to_thread.
    Calling it again on a running hub is safe; load the result into the live
    context with `ctx.load_cert_chain(tls.cert_path, tls.key_path)`.
    """
    if (cert_file is None) != (key_file is None):
        raise TLSConfigError("hub TLS: give both a certificate file and its key file, or neither to let the hub make its own")
    if ca_file is not None and cert_file is None:
        raise TLSConfigError("hub TLS: a CA file only makes sense with your own certificate and key files")
    tls_dir = _prepare_dir(tls_dir)
    names, ips = _host_entries(hostnames, addresses)
    ca_path, ca_key_path = tls_dir / CA_CERT_FILE, tls_dir / CA_KEY_FILE
    with _locked(tls_dir):
        loaded = _load_ca(tls_dir)
        if loaded is None:
            label = hub_id or secrets.token_hex(4)
            ca_cert, ca_key = build_ca(f"Roost hub CA {label}")
            # Key first, certificate last: a CA "exists" once its certificate does.
            write_private_file(ca_key_path, key_pem(ca_key))
            write_private_file(ca_path, cert_pem(ca_cert), mode=0o644)
            _LOGGER.info("created the hub CA %s (fingerprint %s)", ca_path, short_fingerprint(cert_fingerprint(ca_cert)))
        else:
            ca_cert, ca_key = loaded
        if cert_file is not None and key_file is not None:
            return _user_tls(tls_dir, cert_file, key_file, ca_file, (ca_path, ca_key_path))
        problem = _server_cert_problem(tls_dir, ca_cert, names, ips)
        if problem is not None:
            server_cert, server_key = build_server_cert(ca_cert, ca_key, hostnames=hostnames, addresses=addresses)
            write_private_file(tls_dir / SERVER_KEY_FILE, key_pem(server_key))
            write_private_file(tls_dir / SERVER_CERT_FILE, cert_pem(server_cert) + cert_pem(ca_cert), mode=0o644)
            _LOGGER.info("issued a new hub server certificate (%s), valid until %s", problem, server_cert.not_valid_after_utc.date())
    return HubTLS(
        ca_cert_pem=cert_pem(ca_cert),
        ca_fingerprint=cert_fingerprint(ca_cert),
        cert_path=tls_dir / SERVER_CERT_FILE,
        key_path=tls_dir / SERVER_KEY_FILE,
        ca_path=ca_path,
        user_supplied=False,
        client_ca_path=ca_path,
        client_ca_key_path=ca_key_path,
    )


# ------------------------------------------------------------------ the agent side


def pinned_client_context(ca_pem: bytes, *, client_cert: tuple[Path, Path] | tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """A TLS >= 1.2 client context that trusts only ca_pem: not the system store, nothing else.

    The host name is not checked: agents reach a hub by IP or any name, and the
    pinned private CA is the trust anchor. A pinned certificate need not be
    self-signed (partial chains are allowed), so pinning a user's own server
    certificate works. `client_cert` is (cert, key) as file paths (preferred:
    keep them 0600 in the agent's data dir) or as PEM bytes, which are loaded
    through a 0600 temporary file that is gone before this returns.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # unlike create_default_context, loads no system CAs
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        ctx.load_verify_locations(cadata=_first_pem(ca_pem))
    except (ssl.SSLError, ValueError) as err:
        raise HubCAError(f"the pinned hub CA is not a PEM certificate ({err}); pair this agent again") from None
    if client_cert is not None:
        cert, key = client_cert
        if isinstance(cert, bytes) and isinstance(key, bytes):
            with tempfile.TemporaryDirectory(prefix="roost-tls-") as tmp:
                cert_path, key_path = Path(tmp) / "client.pem", Path(tmp) / "client.key"
                write_private_file(cert_path, cert)
                write_private_file(key_path, key)
                ctx.load_cert_chain(cert_path, key_path)
        else:
            ctx.load_cert_chain(Path(cert), Path(key))  # type: ignore[arg-type]
    return ctx


def _first_pem(data: bytes) -> str:
    """Only the first certificate of a PEM bundle: pinning a document must not quietly trust its intermediates too."""
    return cert_pem(_first_cert(data)).decode("ascii")


def csr_key(csr_pem: str) -> str:
    """The base64 raw Ed25519 key a CSR is for and signed by ("" for anything else)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        return ""
    public = csr.public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey) or not csr.is_signature_valid:
        return ""
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def identity_csr(private_key: ed25519.Ed25519PrivateKey, common_name: str) -> bytes:
    """A CSR for a node's own Ed25519 identity key: the client certificate the hub issues is then for the key it enrolled."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(private_key, None)
    return csr.public_bytes(serialization.Encoding.PEM)


def client_key_and_csr(node_id: str) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key and a CSR for it: (key_pem, csr_pem); the agent keeps the key, the hub signs the CSR."""
    key = generate_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(node_id)).sign(key, hashes.SHA256())
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def _host_for_connect(host: str) -> str:
    return host.strip().strip("[]")


def fetch_hub_ca_sync(host: str, port: int, *, timeout: float = 10) -> tuple[bytes, str]:
    """First contact: read the hub's CA over an unverified TLS connection and check it signed what the hub presents.

    Returns (ca_pem, fingerprint) of the anchor. This proves the served CA and
    the presented certificate belong together, not who the hub is: compare
    the fingerprint with the join token's (verify_fingerprint) or show
    short_fingerprint to the admin before trusting it, and send no secret
    before that. Raises HubCAError when what the hub presents does not hold
    together (or is no TLS hub), OSError when it cannot be reached at all.
    """
    host = _host_for_connect(host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nothing to verify against yet: that is what this fetch is for
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    where = f"{host}:{port}"
    try:
        try:
            conn.connect()
        except ssl.SSLError as err:
            raise HubCAError(f"{where} did not complete a TLS handshake ({err.reason or err}); is it a Roost hub, and is the port right?") from None
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        leaf_der = sock.getpeercert(binary_form=True)
        if not leaf_der:
            raise HubCAError(f"{where} presented no certificate")
        conn.request("GET", CA_PEM_PATH, headers={"Accept": CA_PEM_CONTENT_TYPE, "User-Agent": FETCH_USER_AGENT, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(MAX_CA_DOCUMENT_BYTES + 1)
        if resp.status != 200:
            raise HubCAError(f"{where} answered {CA_PEM_PATH} with HTTP {resp.status}; is it a Roost hub new enough to pair over TLS?")
        if len(body) > MAX_CA_DOCUMENT_BYTES:
            raise HubCAError(f"{where} served a CA document over {MAX_CA_DOCUMENT_BYTES} bytes; refusing it")
    except http.client.HTTPException as err:
        raise HubCAError(f"{where} did not answer like a Roost hub: {err!r}") from None
    finally:
        conn.close()
    try:
        served = x509.load_pem_x509_certificates(body)
        leaf = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        raise HubCAError(f"{where} served no PEM certificate at {CA_PEM_PATH}") from None
    anchor, intermediates = served[0], served[1:]
    if anchor != leaf and not _is_ca(anchor):
        raise HubCAError(f"{where} served a certificate at {CA_PEM_PATH} that is not a CA")
    if not chains_to(leaf, anchor, intermediates):
        raise HubCAError(
            f"the certificate {where} presented was not issued by the CA it served at {CA_PEM_PATH}; "
            "something between this host and the hub may be intercepting the connection — not trusting it"
        )
    return cert_pem(anchor), cert_fingerprint(anchor)


async def fetch_hub_ca(host: str, port: int, *, timeout: float = 10) -> tuple[bytes, str]:
    """`fetch_hub_ca_sync` in a thread, for the agent's event loop."""
    return await asyncio.to_thread(fetch_hub_ca_sync, host, port, timeout=timeout)
