//! TLS to Redis (API.md, "Cluster settings"): `rediss://` works for the
//! backplane, and `backplane.tls_ca_file` names a private CA to trust.
//! Each test makes its own CA and a server certificate for 127.0.0.1 with
//! the `openssl` CLI, and runs a `redis-server` that speaks only TLS with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::redis_cluster::RedisCluster;
use super::scenarios::wait_ready;
use super::support::{Node, RedisServer, scratch_dir};
use crate::common::{ACME, EVENT_WAIT, TestApp, id_of};

/// How long a node on a reachable, trusted Redis may take to be ready.
const READY: Duration = Duration::from_secs(20);

/// A private CA, a server certificate it signed for `IP:127.0.0.1`, and a
/// second CA that signed nothing here, in a scratch directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate() -> Self {
        let pki = Self {
            dir: scratch_dir("pki"),
        };
        let ca_conf = "[req]\n\
                       distinguished_name = dn\n\
                       x509_extensions = ca\n\
                       prompt = no\n\
                       [dn]\n\
                       CN = collabd test CA\n\
                       [ca]\n\
                       basicConstraints = critical, CA:TRUE\n\
                       keyUsage = critical, keyCertSign, cRLSign\n\
                       subjectKeyIdentifier = hash\n";
        // clientAuth too: a Redis Cluster node presents its certificate
        // when it dials another's cluster bus, which always asks for one.
        let server_ext = "basicConstraints = critical, CA:FALSE\n\
                          keyUsage = critical, digitalSignature, keyEncipherment\n\
                          extendedKeyUsage = serverAuth, clientAuth\n\
                          subjectAltName = IP:127.0.0.1\n";
        std::fs::write(pki.path("ca.cnf"), ca_conf).expect("ca.cnf is written");
        std::fs::write(pki.path("server.ext"), server_ext).expect("server.ext is written");
        for key in ["ca.key", "other-ca.key", "server.key"] {
            pki.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                key,
            ]);
        }
        for (key, cert) in [("ca.key", "ca.pem"), ("other-ca.key", "other-ca.pem")] {
            pki.openssl(&[
                "req", "-new", "-x509", "-config", "ca.cnf", "-key", key, "-days", "2", "-out",
                cert,
            ]);
        }
        pki.openssl(&[
            "req",
            "-new",
            "-config",
            "ca.cnf",
            "-subj",
            "/CN=127.0.0.1",
            "-key",
            "server.key",
            "-out",
            "server.csr",
        ]);
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl is installed (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A redis-server that speaks only TLS, with the server certificate.
    fn redis(&self) -> RedisServer {
        RedisServer::start_tls(
            &self.path("server.pem"),
            &self.path("server.key"),
            &self.path("ca.pem"),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 scratch path").to_owned()
}

fn namespace(what: &str) -> String {
    collabd::domain::id::random_id(what)
}

/// Two ready nodes: an agent on the second is alerted of a portal
/// invitation with `comment` sent through the first.
async fn deliver_a_portal_invitation(nodes: &[Node], comment: &str) {
    let apps: Vec<TestApp> = nodes.iter().map(|n| TestApp::remote(n.port)).collect();
    for app in &apps {
        wait_ready(app, true, READY).await;
    }
    apps[0].acme(json!({})).await;
    let lead = apps[0].online(ACME, "lead", "Lead", "billing").await;
    let helper = apps[1].online(ACME, "helper", "Helper", "support").await;
    let (mut stream, _) = apps[1].agent_events(&helper.token).await;
    let (session, _) = apps[0].create_session(&lead.token, "web", "Carl").await;
    let invitation = apps[0]
        .invite(
            &lead.token,
            &id_of(&session),
            json!({"target": {"portal": "support"}, "comment": comment}),
        )
        .await
        .expect_status(201);
    let offer = stream.wait_for("invitation_offered", EVENT_WAIT).await;
    assert_eq!(offer["id"], invitation["id"]);
    assert_eq!(offer["comment"], comment);
}

#[actix_rt::test]
async fn nodes_on_rediss_trusting_the_private_ca_are_ready_and_deliver_invitations_across_nodes() {
    let pki = Pki::generate();
    let redis = pki.redis();
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    let ns = namespace("tls");
    let ca = text(&pki.path("ca.pem"));
    let env = [("COLLABD__BACKPLANE__TLS_CA_FILE", ca.as_str())];
    // Redis has no plain port: everything below went through TLS, the
    // pub/sub fan-out from one node to the other included.
    let nodes = [
        Node::start_with(&redis.url(), &ns, "tls-0", &env),
        Node::start_with(&redis.url(), &ns, "tls-1", &env),
    ];
    deliver_a_portal_invitation(&nodes, "over TLS").await;
}

#[actix_rt::test]
async fn nodes_on_a_redis_cluster_that_speaks_only_tls_are_ready_and_deliver_across_nodes() {
    let pki = Pki::generate();
    let cluster = RedisCluster::start_tls(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    );
    let seeds = cluster.urls().join(",");
    assert!(seeds.starts_with("rediss://"), "{seeds}");
    let ns = namespace("tlsc");
    let ca = text(&pki.path("ca.pem"));
    let env = [
        ("COLLABD__BACKPLANE__KIND", "redis-cluster"),
        ("COLLABD__BACKPLANE__REDIS_URLS", seeds.as_str()),
        ("COLLABD__BACKPLANE__TLS_CA_FILE", ca.as_str()),
    ];
    // No server has a plain port: commands, the per-shard subscriptions
    // and the fan-out between the nodes all went through TLS.
    let nodes = [
        Node::start_with("redis://unused", &ns, "tlsc-0", &env),
        Node::start_with("redis://unused", &ns, "tlsc-1", &env),
    ];
    deliver_a_portal_invitation(&nodes, "cluster over TLS").await;
}

#[actix_rt::test]
async fn a_node_on_rediss_that_does_not_trust_the_servers_ca_never_becomes_ready() {
    let pki = Pki::generate();
    let redis = pki.redis();
    let other_ca = text(&pki.path("other-ca.pem"));
    // Without tls_ca_file (the platform's roots know nothing of the test's
    // CA), and with a CA that did not sign the server's certificate.
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("platform roots", &[]),
        (
            "another CA",
            &[("COLLABD__BACKPLANE__TLS_CA_FILE", other_ca.as_str())],
        ),
    ];
    for (case, env) in cases {
        let node = Node::start_with(&redis.url(), &namespace("untrusted"), "untrusted", env);
        let app = TestApp::remote(node.port);
        // The node says why: the handshake was refused over the certificate.
        let deadline = Instant::now() + READY;
        let refusal = loop {
            let logs = node.logs();
            if let Some(line) = logs
                .iter()
                .find(|l| l.contains("pub/sub cannot connect to Redis"))
            {
                break line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{case}: no connection failure logged; logs:\n{}",
                logs.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            refusal.to_ascii_lowercase().contains("certificate"),
            "{case}: {refusal}"
        );
        // And it is not ready, however often it is asked.
        for _ in 0..5 {
            let status = app
                .call(awc::http::Method::GET, "/readyz", None, None)
                .await
                .status;
            assert_eq!(status, 503, "{case}: /readyz while Redis is untrusted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[test]
fn a_tls_ca_file_that_is_no_certificate_refuses_start_up_naming_the_file() {
    let pki = Pki::generate();
    let key = text(&pki.path("server.key"));
    let out = Command::new(env!("CARGO_BIN_EXE_collabd"))
        .env("COLLABD__HTTP__LISTEN", "127.0.0.1:0")
        .env("COLLABD__AUTH__ADMIN_TOKEN", super::support::CLUSTER_ADMIN)
        .env(
            "COLLABD__AUTH__SECRET",
            "secret-0123456789abcdef0123456789abcdef",
        )
        .env("COLLABD__BACKPLANE__KIND", "redis")
        .env("COLLABD__BACKPLANE__REDIS_URL", "rediss://127.0.0.1:1")
        .env("COLLABD__BACKPLANE__TLS_CA_FILE", &key)
        .output()
        .expect("the collabd binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backplane.tls_ca_file"), "{stderr}");
    assert!(stderr.contains(&key), "{stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}
