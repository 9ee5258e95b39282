"""A real OpenLDAP server (Debian's slapd) for the directory sign-in tests.

``LdapServer`` writes a slapd.conf, a CA and a server certificate for 127.0.0.1 made with
``cryptography`` (StartTLS and LDAPS both use them), starts slapd on free ports in a temp
dir and loads a small organisation: people, a search account, and groups as
``groupOfNames`` with the ``memberOf`` overlay, so both ways of reading groups run against
the real thing. Tests change the directory through ``modify`` and ``delete`` as its
rootdn, the way an admin would with ldapmodify.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3 import MODIFY_ADD, MODIFY_DELETE, Connection, Server

from tests.web.live import free_port, stop_process

SLAPD = Path("/usr/sbin/slapd")
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
SEARCH_DN = f"cn=docqa-search,{SUFFIX}"
SEARCH_PASSWORD = "search-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    name: str
    mail: str

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE}"


ALICE = Person("alice", "Wonder-land-1", "Alice Liddell", "alice@example.org")
BOB = Person("bob", "Builder-2-go", "Bob Bauer", "bob@example.org")
CAROL = Person("carol", "Carol-sings-3", "Carol Chen", "carol@example.org")
#: a directory user whose name is also a local account's
ADMIN_TWIN = Person("admin", "Directory-admin-4", "Not The Admin", "twin@example.org")
PEOPLE_AT_START = (ALICE, BOB, CAROL, ADMIN_TWIN)
#: group cn -> members at start
GROUPS_AT_START = {"finance": (ALICE,), "staff": (ALICE, BOB), "Managers": (CAROL,)}


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def new_person(server: LdapServer, *groups: str) -> Person:
    """Someone only the calling test knows (in the given groups), so tests that change the
    directory stay apart on a shared server."""
    n = next(_people)
    person = Person(f"dave{n}", f"Dave-pass-{n}x", f"Dave Number{n}", f"dave{n}@example.org")
    server.add_person(person)
    for cn in groups:
        server.add_member(cn, person)
    return person


_people = itertools.count(1)


class LdapServer:
    def __init__(self, root: Path) -> None:
        if not SLAPD.exists():
            raise RuntimeError(
                "slapd is not installed: run `make ldap-server` (Debian's slapd and ldap-utils)"
            )
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self.ca_file = root / "ca.pem"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def settings(self, **changes: object) -> dict[str, object]:
        """``Settings`` fields (``DOCQA_LDAP_*``) for this server over StartTLS."""
        values: dict[str, object] = {
            "ldap_url": self.url,
            "ldap_starttls": True,
            "ldap_ca_file": self.ca_file,
            "ldap_bind_dn": SEARCH_DN,
            "ldap_bind_password": SEARCH_PASSWORD,
            "ldap_user_base": PEOPLE,
            "ldap_timeout_s": 2.0,
        }
        values.update(changes)
        return values

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> LdapServer:
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        self._write_certificates()
        conf = self.root / "slapd.conf"
        conf.write_text(self._config(), encoding="utf-8")
        urls = f"{self.url}/ {self.ldaps_url}/"
        # -d 0: stay in the foreground (a child we can stop) without debug output.
        with (self.root / "slapd.log").open("wb") as log:
            self._process = subprocess.Popen(
                [str(SLAPD), "-f", str(conf), "-h", urls, "-d", "0"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.root / "slapd.log").read_text(errors="replace")
                raise RuntimeError(f"slapd exited: {log[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("slapd did not start listening in 15 s")
        self._load()
        return self

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- changes an admin makes ---------------------------------------------------------

    @contextmanager
    def admin(self) -> Iterator[Connection]:
        # Not ldap3's own ``with``: it leaves an auto-bound connection open on exit.
        conn = Connection(Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)
        try:
            yield conn
        finally:
            conn.unbind()

    def add_person(self, person: Person) -> None:
        with self.admin() as conn:
            ok = conn.add(
                person.dn,
                ["inetOrgPerson"],
                {
                    "uid": person.uid,
                    "cn": person.name,
                    "sn": person.name.split()[-1],
                    "displayName": person.name,
                    "mail": person.mail,
                    "userPassword": person.password,
                },
            )
            assert ok, conn.result

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            assert conn.delete(dn), conn.result

    def add_member(self, cn: str, person: Person) -> None:
        with self.admin() as conn:
            assert conn.modify(group_dn(cn), {"member": [(MODIFY_ADD, [person.dn])]}), conn.result

    def remove_member(self, cn: str, person: Person) -> None:
        with self.admin() as conn:
            change = {"member": [(MODIFY_DELETE, [person.dn])]}
            assert conn.modify(group_dn(cn), change), conn.result

    # --- setup ------------------------------------------------------------------------

    def _config(self) -> str:
        schemas = "\n".join(
            f"include {SCHEMA / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
        )
        return f"""{schemas}
modulepath {MODULES}
moduleload back_mdb
moduleload memberof
pidfile {self.root / "slapd.pid"}
argsfile {self.root / "slapd.args"}
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {self.root / "server.pem"}
TLSCertificateKeyFile {self.root / "server.key"}
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {self.root / "db"}
overlay memberof
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by users read by * none
"""

    def _load(self) -> None:
        with self.admin() as conn:
            entries: list[tuple[str, list[str], dict[str, object]]] = [
                (SUFFIX, ["dcObject", "organization"], {"o": "Example", "dc": "example"}),
                (PEOPLE, ["organizationalUnit"], {"ou": "people"}),
                (GROUPS, ["organizationalUnit"], {"ou": "groups"}),
                (
                    SEARCH_DN,
                    ["organizationalRole", "simpleSecurityObject"],
                    {"cn": "docqa-search", "userPassword": SEARCH_PASSWORD},
                ),
            ]
            for dn, classes, attrs in entries:
                assert conn.add(dn, classes, attrs), conn.result
        for person in PEOPLE_AT_START:
            self.add_person(person)
        with self.admin() as conn:
            for cn, members in GROUPS_AT_START.items():
                attrs = {"cn": cn, "member": [p.dn for p in members]}
                assert conn.add(group_dn(cn), ["groupOfNames"], attrs), conn.result

    def _write_certificates(self) -> None:
        ca_key, ca = _self_signed_ca("docqa test CA")
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (self.root / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.root / "server.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _self_signed_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def other_ca(path: Path) -> Path:
    """A CA that signed nothing the server presents (for the fail-closed TLS test)."""
    _, cert = _self_signed_ca("somebody else's CA")
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
