//! Real processes for cluster tests: a `redis-server` on a free port that a
//! test can kill and restart (with persistence on), also speaking only TLS
//! with a certificate the test generated, and collabd nodes run from the
//! built binary that a test can `kill -9`. Everything is cleaned up on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The admin token every cluster node is started with: the one the shared
/// test helpers speak.
pub const CLUSTER_ADMIN: &str = crate::common::ADMIN;
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A scratch directory of its own (removed by whoever made it).
pub fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "collabd-test-{what}-{}-{:x}",
        std::process::id(),
        rand_u64()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A redis-server of our own.
pub struct RedisServer {
    /// Its port (the TLS one when it speaks TLS).
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Certificate, key and CA file it serves TLS with (and no plain port),
    /// if any.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl RedisServer {
    /// Starts one on a free port, persisting to a scratch directory (AOF).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts one that speaks only TLS (`--port 0 --tls-port …`) with this
    /// certificate chain and key; clients are not asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        Self::start_with(Some((cert.to_owned(), key.to_owned(), ca.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: scratch_dir("redis"),
            child: None,
            tls,
        };
        server.launch();
        server
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` when it speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key, ca)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--appendfsync")
            .arg("always")
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            // Listening is enough: the handshake is what the test is about.
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .map(|n| buf[..n].starts_with(b"+PONG"))
                .unwrap_or(false)
    }

    /// Kills it (SIGKILL); its data stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs one command with redis-cli and returns its output (plain
    /// servers only).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A collabd node process on the Redis backplane.
pub struct Node {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts the built binary against `redis_url` in `namespace`, and waits
    /// until it logs `listening on`.
    pub fn start(redis_url: &str, namespace: &str, name: &str) -> Self {
        Self::start_with(redis_url, namespace, name, &[])
    }

    /// Like [`Node::start`], with more `COLLABD__…` variables.
    pub fn start_with(redis_url: &str, namespace: &str, name: &str, env: &[(&str, &str)]) -> Self {
        Self::start_bin(
            env!("CARGO_BIN_EXE_collabd"),
            redis_url,
            namespace,
            name,
            env,
        )
    }

    /// Like [`Node::start_with`], running `bin` (e.g. a release build).
    pub fn start_bin(
        bin: &str,
        redis_url: &str,
        namespace: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(bin)
            .env("COLLABD__HTTP__LISTEN", "127.0.0.1:0")
            .env("COLLABD__HTTP__WORKERS", "1")
            .env("COLLABD__HTTP__SHUTDOWN_TIMEOUT_SECS", "1")
            .env("COLLABD__NODE__ID", name)
            .env("COLLABD__AUTH__ADMIN_TOKEN", CLUSTER_ADMIN)
            .env(
                "COLLABD__AUTH__SECRET",
                format!("secret-{namespace}-0123456789abcdef0123456789abcdef"),
            )
            .env("COLLABD__BACKPLANE__KIND", "redis")
            .env("COLLABD__BACKPLANE__REDIS_URL", redis_url)
            .env("COLLABD__BACKPLANE__NAMESPACE", namespace)
            // Races and floods drive one token hard; rate limits are tested
            // apart (tests/e2e/limits.rs, the conformance suite).
            .env("COLLABD__LIMITS__RATE_PER_TOKEN", "1000000")
            .env("COLLABD__LIMITS__RATE_BURST", "1000000")
            .env("COLLABD__LIMITS__ADMIN_RATE", "1000000")
            .env("COLLABD__LIMITS__ADMIN_BURST", "1000000")
            .env("COLLABD__LIMITS__CUSTOMER_RATE_PER_ACCOUNT", "1000000")
            .env("COLLABD__LIMITS__CUSTOMER_BURST_PER_ACCOUNT", "1000000")
            .env("COLLABD__LOG__FORMAT", "json")
            .env("COLLABD__LOG__LEVEL", "warn,collabd::startup=info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the collabd binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        // To look into a run afterwards: every node's lines also go to
        // `$COLLABD_TEST_NODE_LOGS/<name>.log`.
        let mut copy = std::env::var_os("COLLABD_TEST_NODE_LOGS").and_then(|dir| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join(format!("{name}.log")))
                .ok()
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                }
                if let Some(file) = copy.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let port = rx
            .recv_timeout(START_TIMEOUT)
            .expect("the node logs `listening on`");
        Self {
            port,
            child: Some(child),
            logs,
        }
    }

    /// What it logged so far (warnings and start-up lines), one per line.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether it logs a line containing `text` within `limit`: its output
    /// is read by a thread of its own, so a line written just before an
    /// answer may not be in [`Node::logs`] yet when the answer arrives.
    pub async fn logged(&self, text: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.logs().iter().any(|l| l.contains(text)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no shutdown, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ':')
        .collect();
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Starts `n` nodes on one Redis in a fresh namespace.
pub fn cluster(redis: &RedisServer, n: usize) -> (String, Vec<Node>) {
    let namespace = format!("t{:x}", rand_u64());
    let nodes = (0..n)
        .map(|i| Node::start(&redis.url(), &namespace, &format!("node-{i}")))
        .collect();
    (namespace, nodes)
}
