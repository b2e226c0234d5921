"""Throwaway TLS material for tests, made with the `openssl` command line.

make_ca() builds a private CA and a server certificate it signed, valid for
127.0.0.1 and localhost, with the extensions OpenSSL 3 (and so libcurl and
Python's ssl module) insist on when verifying: a CA with
basicConstraints CA:TRUE and keyCertSign, a leaf with CA:FALSE,
serverAuth and a subjectAltName (the CN is not consulted any more).
make_untrusted() builds an equally well-formed self-signed server
certificate that no test trusts, to prove verification really happens.

EC P-256 keys keep generation fast (milliseconds, not RSA's tenths).
We pass our own config file so the result does not depend on the host's
openssl.cnf.
"""

import os
import secrets
import subprocess

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = segops test

[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer

[v3_selfsigned]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
"""

_TIMEOUT = 30  # seconds for any single openssl run


def _openssl(*args, cwd):
    """Run openssl; raise with its stderr if it fails."""
    proc = subprocess.run(['openssl', *args], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError('openssl %s failed (%d): %s' % (
            args[0], proc.returncode,
            proc.stderr.decode('utf-8', 'replace').strip()))


def _write_cnf(dirpath):
    path = os.path.join(dirpath, 'openssl-test.cnf')
    with open(path, 'w', encoding='ascii') as f:
        f.write(_OPENSSL_CNF)
    return path


def _genkey(dirpath, name):
    path = os.path.join(dirpath, name)
    _openssl('genpkey', '-algorithm', 'EC',
             '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path,
             cwd=dirpath)
    os.chmod(path, 0o600)
    return path


def make_ca(dirpath):
    """Create a CA and a server certificate signed by it in dirpath.

    Returns (ca_cert_path, server_cert_path, server_key_path), all PEM.
    """
    os.makedirs(dirpath, exist_ok=True)
    cnf = _write_cnf(dirpath)
    ca_key = _genkey(dirpath, 'ca.key')
    ca_cert = os.path.join(dirpath, 'ca.pem')
    _openssl('req', '-config', cnf, '-new', '-x509', '-key', ca_key,
             '-subj', '/CN=segops throwaway test CA', '-days', '3650',
             '-extensions', 'v3_ca', '-out', ca_cert, cwd=dirpath)

    srv_key = _genkey(dirpath, 'server.key')
    csr = os.path.join(dirpath, 'server.csr')
    srv_cert = os.path.join(dirpath, 'server.pem')
    _openssl('req', '-config', cnf, '-new', '-key', srv_key,
             '-subj', '/CN=localhost', '-out', csr, cwd=dirpath)
    # A random serial: two CAs made by one test run must not collide.
    _openssl('x509', '-req', '-in', csr, '-CA', ca_cert, '-CAkey', ca_key,
             '-set_serial', '0x' + secrets.token_hex(16), '-days', '365',
             '-extfile', cnf, '-extensions', 'v3_server', '-out', srv_cert,
             cwd=dirpath)
    return ca_cert, srv_cert, srv_key


def make_untrusted(dirpath):
    """Create a self-signed server certificate that no CA here vouches for.

    Returns (cert_path, key_path). Names differ from make_ca()'s so both
    can live in one directory.
    """
    os.makedirs(dirpath, exist_ok=True)
    cnf = _write_cnf(dirpath)
    key = _genkey(dirpath, 'untrusted.key')
    cert = os.path.join(dirpath, 'untrusted.pem')
    _openssl('req', '-config', cnf, '-new', '-x509', '-key', key,
             '-subj', '/CN=localhost', '-days', '365',
             '-set_serial', '0x' + secrets.token_hex(16),
             '-extensions', 'v3_selfsigned', '-out', cert, cwd=dirpath)
    return cert, key
