"""Hub CA and certificates, the agent's pinned context, mTLS and the first-contact CA fetch, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.core import tls

HOSTNAMES = ["hub.lan"]
ADDRESSES = ["192.168.1.10"]


def make_hub(path: Path, **kwargs) -> tls.HubTLS:
    kwargs.setdefault("hostnames", HOSTNAMES)
    kwargs.setdefault("addresses", ADDRESSES)
    return tls.ensure_hub_tls(path, **kwargs)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def make_cert(
    subject: str,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
    path_length: int | None = None,
    usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.SERVER_AUTH,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate made the way other tools make them (a user's own CA, step-ca, a self-signed cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def write_pair(folder: Path, stem: str, cert: x509.Certificate | list[x509.Certificate], key) -> tuple[Path, Path]:
    certs = cert if isinstance(cert, list) else [cert]
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(b"".join(tls.cert_pem(c) for c in certs))
    tls.write_private_file(key_path, tls.key_pem(key))
    return cert_path, key_path


# ------------------------------------------------------------------ creating and keeping the hub's material


def test_first_start_makes_a_ca_and_a_server_cert_with_private_keys(tmp_path):
    tls_dir = tmp_path / "data" / "tls"
    hub = make_hub(tls_dir, hub_id="h0123")

    assert mode(tls_dir) == 0o700
    assert mode(tls_dir / "ca.key") == 0o600
    assert mode(hub.key_path) == 0o600
    assert not hub.user_supplied

    ca = load_cert(hub.ca_path)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Roost hub CA h0123"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=3650)

    chain = x509.load_pem_x509_certificates(hub.cert_path.read_bytes())
    leaf = chain[0]
    assert chain[1:] == [ca]  # the CA rides along so clients can see it
    leaf.verify_directly_issued_by(ca)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names, ips = sans(leaf)
    assert names == {"hub.lan", "localhost"}
    assert ips == {"192.168.1.10", "127.0.0.1", "::1"}
    assert dt.timedelta(days=824) < leaf.not_valid_after_utc - leaf.not_valid_before_utc < dt.timedelta(days=826)

    assert hub.ca_fingerprint == hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert hub.ca_fingerprint == tls.ca_fingerprint(hub.ca_cert_pem)
    assert hub.ca_document == hub.ca_cert_pem


def test_second_start_reuses_everything(tmp_path):
    first = make_hub(tmp_path / "tls")
    served = first.cert_path.read_bytes()
    second = make_hub(tmp_path / "tls")
    assert second.ca_fingerprint == first.ca_fingerprint
    assert second.cert_path.read_bytes() == served


def test_new_names_reissue_the_server_cert_under_the_same_ca(tmp_path):
    first = make_hub(tmp_path / "tls")
    old_leaf = load_cert(first.cert_path)
    second = make_hub(tmp_path / "tls", hostnames=["hub.lan", "roost.home.arpa", "10.0.0.2"], addresses=["0.0.0.0"])
    new_leaf = load_cert(second.cert_path)
    assert second.ca_fingerprint == first.ca_fingerprint
    assert new_leaf != old_leaf
    names, ips = sans(new_leaf)
    assert {"hub.lan", "roost.home.arpa"} <= names
    assert "10.0.0.2" in ips and "0.0.0.0" not in ips  # a bind-all address names nothing
    # Asking for a subset of what is covered changes nothing.
    third = make_hub(tmp_path / "tls", hostnames=["roost.home.arpa"], addresses=[])
    assert load_cert(third.cert_path) == new_leaf


def test_a_server_cert_near_expiry_is_issued_again(tmp_path):
    tls_dir = tmp_path / "tls"
    first = make_hub(tls_dir)
    ca = load_cert(first.ca_path)
    ca_key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), password=None)
    short, short_key = tls.build_server_cert(ca, ca_key, hostnames=HOSTNAMES, addresses=ADDRESSES, days=10)
    tls.write_private_file(first.cert_path, tls.cert_pem(short) + first.ca_cert_pem)
    tls.write_private_file(first.key_path, tls.key_pem(short_key))

    again = make_hub(tls_dir)
    leaf = load_cert(again.cert_path)
    assert leaf != short
    assert leaf.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=800)
    assert again.ca_fingerprint == first.ca_fingerprint


def test_a_broken_server_key_is_replaced_but_a_lost_ca_key_is_an_error(tmp_path):
    tls_dir = tmp_path / "tls"
    first = make_hub(tls_dir)
    first.key_path.unlink()
    again = make_hub(tls_dir)
    assert again.key_path.exists() and again.ca_fingerprint == first.ca_fingerprint
    again.server_context()  # the new key matches the new certificate

    (tls_dir / "ca.key").unlink()
    with pytest.raises(tls.TLSConfigError, match="ca.key is missing.*paired again"):
        make_hub(tls_dir)
    assert tls.ca_fingerprint((tls_dir / "ca.pem").read_bytes()) == first.ca_fingerprint  # no silent new CA


def test_a_ca_key_readable_by_others_is_refused(tmp_path):
    tls_dir = tmp_path / "tls"
    make_hub(tls_dir)
    (tls_dir / "ca.key").chmod(0o644)
    with pytest.raises(tls.TLSConfigError, match="chmod 600"):
        make_hub(tls_dir)


# ------------------------------------------------------------------ a user's own certificate


def test_a_users_self_signed_cert_is_presented_and_pinned(tmp_path):
    cert, key = make_cert("hub.example")
    cert_file, key_file = write_pair(tmp_path / "mine", "hub", cert, key)
    hub = make_hub(tmp_path / "tls", cert_file=cert_file, key_file=key_file)
    assert hub.user_supplied
    assert hub.cert_path == cert_file and hub.key_path == key_file
    assert hub.ca_fingerprint == tls.cert_fingerprint(cert)
    assert not (tmp_path / "tls" / "hub.pem").exists()  # no server cert of our own
    assert (tmp_path / "tls" / "ca.pem").exists()  # but a CA for client certificates


def test_a_key_that_does_not_match_the_users_cert_is_refused(tmp_path):
    cert, _ = make_cert("hub.example")
    _, other_key = make_cert("other.example")
    cert_file, _ = write_pair(tmp_path / "mine", "hub", cert, other_key)
    _, other_key_file = write_pair(tmp_path / "other", "other", cert, other_key)
    with pytest.raises(tls.TLSConfigError, match="does not match the certificate"):
        make_hub(tmp_path / "tls", cert_file=cert_file, key_file=other_key_file)
    with pytest.raises(tls.TLSConfigError, match="both a certificate file and its key"):
        make_hub(tmp_path / "tls", cert_file=cert_file)


def test_a_users_ca_file_becomes_the_pin_and_must_have_issued_the_cert(tmp_path):
    root = make_cert("Home Root CA", ca=True, usage=None)
    leaf, leaf_key = make_cert("hub.example", issuer=root)
    cert_file, key_file = write_pair(tmp_path / "mine", "hub", leaf, leaf_key)
    ca_file = tmp_path / "mine" / "root.pem"
    ca_file.write_bytes(tls.cert_pem(root[0]))

    hub = make_hub(tmp_path / "tls", cert_file=cert_file, key_file=key_file, ca_file=ca_file)
    assert hub.ca_fingerprint == tls.cert_fingerprint(root[0])
    assert x509.load_pem_x509_certificates(hub.cert_path.read_bytes()) == [leaf, root[0]]

    stranger = make_cert("Someone Else CA", ca=True, usage=None)
    ca_file.write_bytes(tls.cert_pem(stranger[0]))
    with pytest.raises(tls.TLSConfigError, match="was not issued by the CA"):
        make_hub(tmp_path / "tls", cert_file=cert_file, key_file=key_file, ca_file=ca_file)


# ------------------------------------------------------------------ real TLS on loopback


@asynccontextmanager
async def line_server(ctx: ssl.SSLContext, hub: tls.HubTLS | None = None) -> AsyncIterator[tuple[int, list]]:
    """A TLS server that echoes one line and records the node id of each client certificate it saw."""
    seen: list = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            seen.append(hub.client_cert_node_id(peer) if hub else peer)
            writer.write(line)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, ssl_handshake_timeout=5)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


async def echo(port: int, ctx: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="anything"), 5)
    try:
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the server turned this client away (with TLS 1.3 the client may only learn it on its first read)."""
    try:
        return await echo(port, ctx) != b"ping\n"
    except (ssl.SSLError, ConnectionError):
        return True


async def test_a_pinned_agent_connects_and_one_pinned_to_another_ca_is_refused(tmp_path):
    hub = make_hub(tmp_path / "hub")
    other = make_hub(tmp_path / "other")
    async with line_server(hub.server_context()) as (port, _):
        assert await echo(port, tls.pinned_client_context(hub.ca_cert_pem)) == b"ping\n"
        with pytest.raises(ssl.SSLCertVerificationError):
            await echo(port, tls.pinned_client_context(other.ca_cert_pem))


def test_a_pinned_context_trusts_our_ca_and_nothing_else(tmp_path):
    hub = make_hub(tmp_path / "hub")
    ctx = tls.pinned_client_context(hub.ca_document)
    cas = ctx.get_ca_certs(binary_form=True)
    assert [hashlib.sha256(der).hexdigest() for der in cas] == [hub.ca_fingerprint]
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_a_node_client_cert_cannot_pose_as_the_hub(tmp_path):
    hub = make_hub(tmp_path / "hub")
    cert_pem, key_pem = hub.issue_client_cert("n0000000000aa")
    impostor = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_file, key_file = tmp_path / "node.pem", tmp_path / "node.key"
    tls.write_private_file(cert_file, cert_pem)
    tls.write_private_file(key_file, key_pem)
    impostor.load_cert_chain(cert_file, key_file)
    async with line_server(impostor) as (port, _):
        with pytest.raises(ssl.SSLCertVerificationError):
            await echo(port, tls.pinned_client_context(hub.ca_cert_pem))


async def test_required_client_certs_admit_only_ours(tmp_path):
    hub = make_hub(tmp_path / "hub")
    other = make_hub(tmp_path / "other")
    cert_pem, key_pem = hub.issue_client_cert("n0123456789ab")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)

    async with line_server(hub.server_context(require_client_cert=True), hub) as (port, seen):
        assert await refused(port, tls.pinned_client_context(hub.ca_cert_pem))
        foreign = other.issue_client_cert("n0123456789ab")
        assert await refused(port, tls.pinned_client_context(hub.ca_cert_pem, client_cert=foreign))
        assert seen == []
        assert await echo(port, tls.pinned_client_context(hub.ca_cert_pem, client_cert=(cert_pem, key_pem))) == b"ping\n"
        assert seen == ["n0123456789ab"]

    # The agent may keep its certificate in files instead.
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    tls.write_private_file(cert_file, cert_pem)
    tls.write_private_file(key_file, key_pem)
    async with line_server(hub.server_context(optional_client_cert=True), hub) as (port, seen):
        assert await echo(port, tls.pinned_client_context(hub.ca_cert_pem, client_cert=(cert_file, key_file))) == b"ping\n"
        assert await echo(port, tls.pinned_client_context(hub.ca_cert_pem)) == b"ping\n"  # optional: a browser gets in
        assert seen == ["n0123456789ab", None]


def test_client_cert_node_id_trusts_only_our_client_certs(tmp_path):
    hub = make_hub(tmp_path / "hub")
    other = make_hub(tmp_path / "other")

    def der(pem: bytes) -> bytes:
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

    assert hub.client_cert_node_id(der(hub.issue_client_cert("n1")[0])) == "n1"
    assert hub.client_cert_node_id(der(other.issue_client_cert("n1")[0])) is None
    assert hub.client_cert_node_id(der(hub.cert_path.read_bytes())) is None  # the server cert is no client cert
    assert hub.client_cert_node_id(None) is None
    assert hub.client_cert_node_id(b"garbage") is None


def test_a_csr_gets_a_client_cert_without_the_hub_seeing_the_key(tmp_path):
    hub = make_hub(tmp_path / "hub")
    key_pem, csr_pem = tls.client_key_and_csr("ignored")
    cert = x509.load_pem_x509_certificate(hub.sign_client_csr(csr_pem, "n42"))
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert tls._same_key(cert, key)
    assert hub.client_cert_node_id(cert.public_bytes(serialization.Encoding.DER)) == "n42"


async def test_a_users_cert_through_an_intermediate_works_end_to_end(tmp_path):
    """step-ca style: root -> intermediate -> leaf; the user gives leaf+intermediate and the root."""
    root = make_cert("Home Root CA", ca=True, path_length=1, usage=None)
    inter = make_cert("Home Intermediate CA", issuer=root, ca=True, path_length=0, usage=None)
    leaf, leaf_key = make_cert("hub.example", issuer=inter)
    cert_file, key_file = write_pair(tmp_path / "mine", "hub", [leaf, inter[0]], leaf_key)
    ca_file = tmp_path / "mine" / "root.pem"
    ca_file.write_bytes(tls.cert_pem(root[0]))
    hub = make_hub(tmp_path / "tls", cert_file=cert_file, key_file=key_file, ca_file=ca_file)

    async with ca_site(hub) as port:
        ca_pem, fp = await tls.fetch_hub_ca("127.0.0.1", port)
        assert fp == tls.cert_fingerprint(root[0]) == hub.ca_fingerprint
        async with line_server(hub.server_context()) as (line_port, _):
            assert await echo(line_port, tls.pinned_client_context(ca_pem)) == b"ping\n"


async def test_a_users_cert_signed_elsewhere_can_itself_be_the_pin(tmp_path):
    unknown_ca = make_cert("Some Public CA", ca=True, usage=None)
    leaf, leaf_key = make_cert("hub.example", issuer=unknown_ca)
    cert_file, key_file = write_pair(tmp_path / "mine", "hub", leaf, leaf_key)
    hub = make_hub(tmp_path / "tls", cert_file=cert_file, key_file=key_file)
    assert hub.ca_fingerprint == tls.cert_fingerprint(leaf)
    async with ca_site(hub) as port:
        ca_pem, fp = await tls.fetch_hub_ca("127.0.0.1", port)
        assert fp == hub.ca_fingerprint
        async with line_server(hub.server_context()) as (line_port, _):
            assert await echo(line_port, tls.pinned_client_context(ca_pem)) == b"ping\n"


# ------------------------------------------------------------------ first contact: fetching the hub CA


@asynccontextmanager
async def ca_site(presented: tls.HubTLS, served: bytes | None = None, status: int = 200) -> AsyncIterator[int]:
    """An aiohttp server with `presented`'s certificate serving a CA document at /api/v1/ca.pem, like the hub."""
    document = presented.ca_document if served is None else served

    async def ca_pem(request: web.Request) -> web.Response:
        return web.Response(body=document, status=status, content_type=tls.CA_PEM_CONTENT_TYPE)

    app = web.Application()
    app.router.add_get(tls.CA_PEM_PATH, ca_pem)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=presented.server_context())
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_fetch_hub_ca_returns_the_ca_that_signed_the_hub(tmp_path):
    hub = make_hub(tmp_path / "hub")
    async with ca_site(hub) as port:
        ca_pem, fp = await tls.fetch_hub_ca("127.0.0.1", port, timeout=5)
    assert ca_pem == hub.ca_cert_pem
    assert fp == hub.ca_fingerprint
    assert tls.verify_fingerprint(tls.compact_fingerprint(hub.ca_fingerprint), fp)  # what a join token would carry


async def test_fetch_hub_ca_refuses_a_served_ca_that_did_not_sign_the_presented_cert(tmp_path):
    hub = make_hub(tmp_path / "hub")
    spoof = make_hub(tmp_path / "spoof")
    async with ca_site(spoof, served=hub.ca_document) as port:
        with pytest.raises(tls.HubCAError, match="not issued by the CA it served"):
            await tls.fetch_hub_ca("127.0.0.1", port, timeout=5)


async def test_a_consistent_impostor_is_caught_by_the_join_token_fingerprint(tmp_path):
    hub = make_hub(tmp_path / "hub")
    impostor = make_hub(tmp_path / "impostor")
    async with ca_site(impostor) as port:
        _, fp = await tls.fetch_hub_ca("127.0.0.1", port, timeout=5)
    assert not tls.verify_fingerprint(hub.ca_fingerprint, fp)


async def test_fetch_hub_ca_explains_what_is_not_a_tls_hub(tmp_path):
    hub = make_hub(tmp_path / "hub")
    async with ca_site(hub, status=404) as port:
        with pytest.raises(tls.HubCAError, match="HTTP 404"):
            await tls.fetch_hub_ca("127.0.0.1", port, timeout=5)
    async with ca_site(hub, served=b"not a certificate") as port:
        with pytest.raises(tls.HubCAError, match="no PEM certificate"):
            await tls.fetch_hub_ca("127.0.0.1", port, timeout=5)

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    try:
        with pytest.raises(tls.HubCAError, match="TLS handshake"):
            await tls.fetch_hub_ca("127.0.0.1", server.sockets[0].getsockname()[1], timeout=5)
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------ fingerprints


def test_fingerprint_forms():
    fp = hashlib.sha256(b"x").hexdigest()
    grouped = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()
    spaced = " ".join(fp[i : i + 4] for i in range(0, 64, 4))
    for form in (fp, grouped, spaced, "sha256:" + fp, tls.compact_fingerprint(fp)):
        assert tls.verify_fingerprint(form, fp), form
        assert tls.verify_fingerprint(fp, form), form
    assert len(tls.compact_fingerprint(fp)) == 43
    other = hashlib.sha256(b"y").hexdigest()
    assert not tls.verify_fingerprint(other, fp)
    assert not tls.verify_fingerprint(fp[:16], fp)  # a display prefix is not a pin
    assert not tls.verify_fingerprint("", fp)
    assert not tls.verify_fingerprint("zz" * 32, "zz" * 32)
    assert tls.short_fingerprint(fp) == " ".join(fp[i : i + 4] for i in range(0, 16, 4))


def test_the_agent_can_import_tls_without_the_web_stack():
    script = "import sys, json, roost.core.tls; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'jinja2'))))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_host_entries_normalise_names_and_skip_unspecified_addresses():
    names, ips = tls._host_entries(["Hub.LAN.", "[fd00::1]", "bücher.example"], ["0.0.0.0", "::"])
    assert names == ["hub.lan", "xn--bcher-kva.example", "localhost"]
    assert ips == [ipaddress.ip_address("fd00::1"), ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    with pytest.raises(tls.TLSConfigError, match="not an IP address"):
        tls._host_entries([], ["hub.lan"])
