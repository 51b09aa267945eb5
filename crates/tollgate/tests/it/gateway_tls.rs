//! An HTTPS upstream. A TLS terminator (Python's `ssl` module) with a certificate issued by a
//! private CA (made here with the `openssl` command) stands in front of the fake provider.
//! With `gateway.ca_file` naming that CA, the gateway's calls go over TLS and are recorded
//! token by token, streamed or not; without it, the gateway refuses the upstream's certificate
//! (502 naming the reason) and the failed call still has its event. With `gateway.tls_cert`
//! and `gateway.tls_key` the gateway itself serves HTTPS to the official SDKs.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::gateway::{Gw, http, n, wait_for_file};
use crate::support::{Sandbox, path_str, python};

/// Terminates TLS on a port of its choosing (written to the address file) and relays the
/// bytes both ways to the plain-HTTP fake provider.
const RELAY: &str = r#"
import socket, ssl, sys, threading
cert, key, target, addr_file = sys.argv[1:5]
host, port = target.rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
with open(addr_file, "w") as f:
    f.write("127.0.0.1:%d\n" % srv.getsockname()[1])

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError):
        c.close()  # a client that refused the certificate
        return
    u = socket.create_connection((host, int(port)))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)

while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, leaf.pem, leaf.key).
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Tollgate test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay(certs: &Path, target: &str) -> (Relay, String) {
    let addr_file = certs.join("relay.addr");
    let mut child = Command::new(python())
        .arg("-c")
        .arg(RELAY)
        .arg(certs.join("leaf.pem"))
        .arg(certs.join("leaf.key"))
        .arg(target)
        .arg(&addr_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the TLS relay");
    let addr = wait_for_file(&addr_file, &mut child);
    (Relay(child), addr)
}

#[test]
fn https_upstream_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    let mut g = Gw::start(Some(&format!(
        "[gateway]\nca_file = \"{}\"\n",
        path_str(&ca)
    )));
    let (_relay, relay_addr) = relay(certs.path(), &g.fake_addr);
    g.stop();
    g.openai_base_url = Some(format!("https://{relay_addr}/v1"));
    g.restart();
    let r = g.py(
        r#"
import json, openai
c = openai.OpenAI(max_retries=0)
out = {}
u = "prompt_tokens=1000,completion_tokens=200"
r = c.chat.completions.create(model="gw-gpt", messages=[],
    extra_headers={"x-tollgate-request-id": "tls-whole", "x-tollgate-feature": "f", "x-fake-usage": u})
out["whole"] = r.choices[0].message.content
s = c.chat.completions.create(model="gw-gpt", messages=[], stream=True,
    extra_headers={"x-tollgate-request-id": "tls-stream", "x-tollgate-feature": "f", "x-fake-usage": u})
out["stream"] = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
print(json.dumps(out))
"#,
    );
    assert_eq!(r["whole"], "Hello from the");
    assert_eq!(r["stream"], "Hello from the");
    g.stop();
    for rid in ["tls-whole", "tls-stream"] {
        let e = g.event(rid);
        assert_eq!(e["status"], "ok", "{e}");
        assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (1000, 200));
        // 1,000 x 1e-6 + 200 x 5e-6 = 0.001 + 0.001 = 0.002
        assert_eq!(e["cost"], "0.002", "{e}");
    }

    // The same upstream without the CA: its certificate is refused, the call still recorded.
    let mut plain = Gw::start(None);
    plain.stop();
    plain.openai_base_url = Some(format!("https://{relay_addr}/v1"));
    plain.restart();
    let auth = format!("Bearer {}", plain.key);
    let (status, _, body) = http(
        &plain.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("x-tollgate-request-id", "tls-untrusted"),
            ("x-tollgate-feature", "f"),
        ],
        br#"{"model":"gw-gpt","messages":[]}"#,
    );
    assert_eq!(status, 502, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    plain.stop();
    let e = plain.event("tls-untrusted");
    assert_eq!(
        (e["status"].as_str(), n(&e, "http_status")),
        (Some("upstream_error"), 502)
    );
}

#[test]
fn the_gateway_serves_https_to_the_official_sdks() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let mut g = Gw::start(Some(&format!(
        "[gateway]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        path_str(&certs.path().join("leaf.pem")),
        path_str(&certs.path().join("leaf.key"))
    )));
    let script = format!(
        r#"
import json, os, ssl, openai, anthropic
ctx = ssl.create_default_context(cafile={ca:?})
gw = os.environ["GATEWAY"]
out = {{}}
c = openai.OpenAI(base_url="https://" + gw + "/v1", max_retries=0, http_client=openai.DefaultHttpxClient(verify=ctx))
r = c.chat.completions.create(model="gw-gpt", messages=[],
    extra_headers={{"x-tollgate-request-id": "https-openai", "x-tollgate-feature": "f",
                   "x-fake-usage": "prompt_tokens=1000,completion_tokens=200"}})
out["openai"] = r.choices[0].message.content
a = anthropic.Anthropic(base_url="https://" + gw, max_retries=0, http_client=anthropic.DefaultHttpxClient(verify=ctx))
with a.messages.stream(model="gw-claude", max_tokens=5, messages=[],
        extra_headers={{"x-tollgate-request-id": "https-anthropic", "x-tollgate-feature": "f",
                       "x-fake-usage": "input_tokens=100,output_tokens=10"}}) as s:
    out["anthropic"] = "".join(s.text_stream)
# A client that does not trust the CA is refused during the handshake.
try:
    openai.OpenAI(base_url="https://" + gw + "/v1", max_retries=0).models.list()
    out["untrusted"] = "accepted"
except openai.APIConnectionError as e:
    out["untrusted"] = repr(e.__cause__)
print(json.dumps(out))
"#,
        ca = path_str(&certs.path().join("ca.pem"))
    );
    let r = g.py(&script);
    assert_eq!(r["openai"], "Hello from the");
    assert_eq!(r["anthropic"], "Hello from the");
    assert!(
        r["untrusted"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE_VERIFY_FAILED"),
        "{r}"
    );
    g.stop();
    let e = g.event("https-openai");
    // 1,000 x 1e-6 + 200 x 5e-6 = 0.002
    assert_eq!(e["cost"], "0.002", "{e}");
    let e = g.event("https-anthropic");
    // 100 x 3e-6 + 10 x 15e-6 = 0.0003 + 0.00015 = 0.00045
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (100, 10));
    assert_eq!(e["cost"], "0.00045", "{e}");
}

#[test]
fn a_bad_ca_file_is_named_by_config_check() {
    let sb = Sandbox::new();
    sb.write("not-a-cert.pem", "hello\n");
    for (toml, want) in [
        (
            "[gateway]\nca_file = \"missing.pem\"\n",
            "gateway.ca_file: cannot read",
        ),
        (
            "[gateway]\nca_file = \"not-a-cert.pem\"\n",
            "not-a-cert.pem: holds no certificate",
        ),
        (
            "[gateway]\ntls_cert = \"not-a-cert.pem\"\n",
            "gateway.tls_key: missing",
        ),
        (
            "[gateway]\ntls_cert = \"not-a-cert.pem\"\ntls_key = \"k.pem\"\n",
            "gateway.tls_cert: ",
        ),
    ] {
        crate::support::assert_config_refused(&sb, toml, want);
    }
}
