"""Who may talk to the MLLP listener: only the allow-listed analyser addresses (others
are closed before a byte is read) and, with TLS, only analysers holding a client
certificate of the configured CA. No database: the listener is pure Python."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coffre.labwork import hl7v2, mllp

MESSAGE = ("MSH|^~\\&|SYSMEX|LABO|COFFRE|750000010|20240312083000||ORU^R01|MSG00001|P|2.5\r"
           "OBR|1||240312000101|CBC\rOBX|1|NM|718-7^Hb^LN||13.2|g/dL\r")


class Recorder:
    """A message handler that notes every message it is given and acknowledges it."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, text: str) -> str:
        with self.lock:
            self.messages.append(text)
        return hl7v2.build_ack(hl7v2.parse_oru(text).control_id, "AA")


def listening(handler, **options) -> mllp.MllpServer:
    server = mllp.MllpServer(handler, "127.0.0.1", 0, **options)
    server.start_background()
    return server


# -- the allow-list ---------------------------------------------------------------------

def test_an_allow_list_takes_addresses_networks_and_mapped_addresses():
    allowed = mllp.AllowList.parse("127.0.0.1, 10.0.0.0/28 2001:db8::5")
    assert "127.0.0.1" in allowed and "10.0.0.15" in allowed and "2001:db8::5" in allowed
    assert "::ffff:10.0.0.3" in allowed  # an IPv4 peer seen by a dual-stack socket
    assert "10.0.0.16" not in allowed and "127.0.0.2" not in allowed
    assert "not-an-address" not in allowed
    assert str(allowed) == "127.0.0.1,10.0.0.0/28,2001:db8::5"
    assert not mllp.AllowList.parse(" , ")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        mllp.AllowList.parse("127.0.0.1,10.0.0.300")


def test_a_connection_from_an_address_off_the_list_is_closed_unread():
    """A local process that is not the lab's analyser (here: any process on this
    machine, as 127.0.0.1 is not on the list) gets no answer at all."""
    handler = Recorder()
    server = listening(handler, allowed=mllp.AllowList(["192.0.2.7"]))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            assert sock.recv(1) == b""  # closed by the server before anything was sent
        with pytest.raises(ConnectionError):
            mllp.send("127.0.0.1", server.port, MESSAGE)
    finally:
        server.shutdown()
    assert handler.messages == []


def test_an_allowed_network_is_answered():
    handler = Recorder()
    server = listening(handler, allowed=mllp.AllowList.parse("10.1.0.0/16,127.0.0.0/8"))
    try:
        assert hl7v2.ack_code(mllp.send("127.0.0.1", server.port, MESSAGE)) == "AA"
    finally:
        server.shutdown()
    assert len(handler.messages) == 1


# -- TLS with client certificates -------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(key, subject: str, issuer_key, issuer: str, *, ca: bool = False,
                 ip: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(_name(issuer)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_encipherment=False, content_commitment=False,
                   data_encipherment=False, key_agreement=ca is False, key_cert_sign=ca,
                   crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A lab CA with the listener's certificate and an analyser's, and a stranger CA
    with its own "analyser" certificate, as PEM files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ca_key = self._key("ca")
        self.ca = self._cert("ca", _certificate(ca_key, "Lab CA", ca_key, "Lab CA", ca=True))
        server_key = self._key("server")
        self.server = self._cert("server", _certificate(server_key, "coffre-mllp", ca_key,
                                                        "Lab CA", ip="127.0.0.1"))
        self.analyser = self._pair("analyser", "Sysmex XN-1000", ca_key, "Lab CA")
        other_key = self._key("other-ca")
        self._cert("other-ca", _certificate(other_key, "Other CA", other_key, "Other CA",
                                            ca=True))
        self.stranger = self._pair("stranger", "Sysmex XN-1000", other_key, "Other CA")

    def _key(self, name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        (self.folder / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return key

    def _cert(self, name: str, certificate: x509.Certificate) -> Path:
        path = self.folder / f"{name}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def _pair(self, name: str, subject: str, issuer_key, issuer: str) -> tuple[Path, Path]:
        key = self._key(name)
        return self._cert(name, _certificate(key, subject, issuer_key, issuer)), \
            self.folder / f"{name}.key"

    def server_context(self) -> ssl.SSLContext:
        return mllp.server_tls(self.server, self.folder / "server.key", self.ca)

    def client_context(self, pair: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=self.ca)
        if pair:
            context.load_cert_chain(*pair)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(pki):
    handler = Recorder()
    server = listening(handler, allowed=mllp.AllowList(["127.0.0.1"]),
                       tls=pki.server_context())
    yield server, handler
    server.shutdown()


def test_an_analyser_with_a_certificate_of_the_lab_ca_is_answered(pki, tls_server):
    server, handler = tls_server
    ack = mllp.send("127.0.0.1", server.port, MESSAGE,
                    tls=pki.client_context(pki.analyser))
    assert hl7v2.ack_code(ack) == "AA" and handler.messages


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate",
                                 "plain MLLP"])
def test_a_client_without_a_lab_certificate_is_refused_unread(pki, tls_server, who):
    server, handler = tls_server
    tls = {"no certificate": pki.client_context(None),
           "another CA's certificate": pki.client_context(pki.stranger),
           "plain MLLP": None}[who]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mllp.send("127.0.0.1", server.port, MESSAGE, tls=tls)
    assert handler.messages == []


def test_tls_files_that_do_not_match_are_refused(pki):
    with pytest.raises(ssl.SSLError):
        mllp.server_tls(pki.server, pki.folder / "analyser.key", pki.ca)
