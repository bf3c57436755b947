"""TLS and basic auth on the exporter: a real Prometheus scrapes over TLS with basic auth; wrong
credentials get 401 and are counted; a client CA requires client certificates; a renewed
certificate is served without a restart; /healthz stays open."""

import base64
import os
import ssl
import time

import bcrypt
import pytest
import requests

from agent.serve.exporter import Exporter
from agent.serve.websecurity import BasicAuth, TLSContext
from tests.support.peers import wait_until
from tests.support.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


USERS = {"prometheus": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks():
    auth = BasicAuth(USERS)
    assert auth.check(basic("prometheus", "s3cret"))
    assert auth.check(basic("prometheus", "s3cret"))  # the remembered pair
    assert not auth.check(basic("prometheus", "wrong"))
    assert not auth.check(basic("nobody", "s3cret"))
    assert not auth.check("Basic !!notbase64") and not auth.check(None) and not auth.check("Bearer x")


def test_prometheus_scrapes_over_tls_with_basic_auth(pki, serving, prometheus):
    tls = TLSContext(str(pki / "server.crt"), str(pki / "server.key"))
    run = serving('[agent]\ninterval = "500ms"\n[collectors.nvml]\nenabled = false\n[discovery]\nenabled = false\n',
                  tls=tls, auth=BasicAuth(USERS))
    exporter = run.exporter
    prom = prometheus([], config_text=(
        f"global:\n  scrape_interval: 1s\nscrape_configs:\n"
        f"  - job_name: agent\n    scheme: https\n    tls_config:\n      ca_file: {pki / 'ca.crt'}\n"
        f"    basic_auth:\n      username: prometheus\n      password: s3cret\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
        f"  - job_name: wrong\n    scheme: https\n    tls_config:\n      ca_file: {pki / 'ca.crt'}\n"
        f"    basic_auth:\n      username: prometheus\n      password: nope\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"))
    wait_until(lambda: prom.query('up{job="agent"} == 1'), 30, 0.5, what="the TLS scrape")
    wait_until(lambda: prom.query('up{job="wrong"} == 0'), 30, 0.5, what="the refused scrape")
    wait_until(lambda: prom.query("llm_agent_exporter_auth_failures_total > 0"), 30, 0.5, what="401s counted")
    url = f"https://127.0.0.1:{exporter.port}"
    assert requests.get(url + "/metrics", verify=str(pki / "ca.crt")).status_code == 401
    assert requests.get(url + "/healthz", verify=str(pki / "ca.crt")).status_code in (200, 503)  # open for load balancers
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5)  # plain HTTP on the TLS port


def test_client_ca_requires_a_client_certificate_and_certificates_reload(pki, tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes((pki / "server.crt").read_bytes())
    key.write_bytes((pki / "server.key").read_bytes())
    exporter = Exporter("127.0.0.1", 0, tls=TLSContext(str(cert), str(key), str(pki / "ca.crt"))).start()
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    try:
        ok = requests.get(url, verify=str(pki / "ca.crt"), cert=(str(pki / "client.crt"), str(pki / "client.key")))
        assert ok.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=str(pki / "ca.crt"))  # no client certificate
        # renew: the next connection gets the new certificate, no restart
        time.sleep(0.01)
        cert.write_bytes((pki / "server2.crt").read_bytes())
        key.write_bytes((pki / "server2.key").read_bytes())
        os.utime(cert)
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        import socket

        with socket.create_connection(("127.0.0.1", exporter.port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                subject = dict(x[0] for x in s.getpeercert()["subject"])
        assert subject["commonName"] == "server2"
        assert exporter.tls_errors >= 1
    finally:
        exporter.stop()
