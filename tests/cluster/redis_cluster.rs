//! A real Redis Cluster of our own: three masters and three replicas
//! (`redis-server --cluster-enabled yes` on free ports whose cluster-bus port,
//! port + 10000, is free too), joined by `redis-cli --cluster create`, with a
//! small `cluster-node-timeout` so a killed master's replica takes over in a
//! few seconds. Everything is killed and removed on drop.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::scratch_dir;

/// How long the cluster may take to form, or to fail over.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Cluster-bus ports are port + 10000 and must stay below 65536.
const HIGHEST_PORT: u16 = 55_534;

/// Three masters and three replicas.
pub struct RedisCluster {
    servers: BTreeMap<u16, Option<Child>>,
    dir: PathBuf,
    /// Certificate, key and CA when every port (clients, cluster bus,
    /// replication) speaks only TLS.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl RedisCluster {
    /// Starts six servers and joins them (one replica per master); returns
    /// once every node reports `cluster_state:ok` and every replica is in
    /// sync with its master.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`RedisCluster::start`], but speaking only TLS everywhere with
    /// this certificate (clients are not asked for one).
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        Self::start_with(Some((cert.to_owned(), key.to_owned(), ca.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Self {
        let dir = scratch_dir("redis-cluster");
        let ports = cluster_ports(6);
        let mut cluster = Self {
            servers: BTreeMap::new(),
            dir,
            tls,
        };
        for port in ports {
            let child = cluster.launch(port);
            cluster.servers.insert(port, Some(child));
        }
        let seeds: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        // `--cluster create` waits for the nodes to meet for as long as it
        // takes: bounded here, so a cluster that cannot form fails the test.
        let mut create = Command::new("redis-cli")
            .args(cluster.tls_args())
            .args(["--cluster", "create"])
            .args(&seeds)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli is installed");
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            if let Some(status) = create.try_wait().expect("redis-cli runs") {
                assert!(status.success(), "redis-cli --cluster create failed");
                break;
            }
            if Instant::now() > deadline {
                let _ = create.kill();
                let _ = create.wait();
                panic!("redis-cli --cluster create did not finish in {FORM_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster.wait_until("the cluster formed", |c| {
            c.ports().iter().all(|&p| c.healthy(p)) && c.masters().len() == 3
        });
        cluster
    }

    fn launch(&self, port: u16) -> Child {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("a node directory");
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port.to_string()]),
            Some((cert, key, ca)) => command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let deadline = Instant::now() + FORM_TIMEOUT;
        while !self.cli(port, &["PING"]).starts_with("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// `redis://127.0.0.1:<port>` of every live server: the seed list.
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.ports()
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect()
    }

    /// The ports of the servers still running.
    pub fn ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .filter(|(_, child)| child.is_some())
            .map(|(&port, _)| port)
            .collect()
    }

    /// Runs one command with redis-cli against one server (no redirects
    /// followed) and returns what it printed.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(self.tls_args())
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// What redis-cli needs to speak to these servers.
    fn tls_args(&self) -> Vec<String> {
        match &self.tls {
            None => Vec::new(),
            Some((_, _, ca)) => vec![
                "--tls".to_owned(),
                "--cacert".to_owned(),
                ca.to_string_lossy().into_owned(),
            ],
        }
    }

    /// `INFO <section>` of one server.
    pub fn info(&self, port: u16, section: &str) -> String {
        self.cli(port, &["INFO", section])
    }

    /// The slot of a key (hash tags included).
    pub fn keyslot(&self, key: &str) -> u16 {
        let any = self.ports()[0];
        self.cli(any, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The port of each master and how many keys it holds, by port.
    pub fn keys_per_master(&self) -> Vec<(u16, u64)> {
        self.masters()
            .into_keys()
            .map(|port| {
                let keys = self.cli(port, &["DBSIZE"]).trim().parse().unwrap_or(0);
                (port, keys)
            })
            .collect()
    }

    /// Masters by port, with the slot ranges each serves, as the first live
    /// server sees them.
    fn masters(&self) -> BTreeMap<u16, Vec<(u16, u16)>> {
        let Some(&any) = self.ports().first() else {
            return BTreeMap::new();
        };
        let mut masters = BTreeMap::new();
        for line in self.cli(any, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let Some(port) = node_port(fields[1]) else {
                continue;
            };
            let ranges = fields[8..]
                .iter()
                .filter_map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            masters.insert(port, ranges);
        }
        masters
    }

    /// The master serving `slot`, as the first live server sees it.
    fn master_of(&self, slot: u16) -> Option<u16> {
        self.masters()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .map(|(port, _)| port)
    }

    /// The master serving `key`'s slot.
    pub fn master_for_key(&self, key: &str) -> u16 {
        self.master_of(self.keyslot(key))
            .expect("some master owns the slot")
    }

    /// How many keys the server on `port` holds in `key`'s slot.
    pub fn keys_in_slot_of(&self, port: u16, key: &str) -> u64 {
        let slot = self.keyslot(key).to_string();
        self.cli(port, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Another master than `port`.
    pub fn other_master(&self, port: u16) -> u16 {
        self.masters()
            .into_keys()
            .find(|&p| p != port)
            .expect("three masters")
    }

    /// Resharding by hand, as `redis-cli --cluster reshard` does it, for
    /// one slot: `key`'s slot moves to the master on `to` with its keys
    /// (IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere),
    /// while clients keep running. Returns once every server agrees.
    pub fn move_slot_of(&self, key: &str, to: u16) {
        let slot = self.keyslot(key).to_string();
        let from = self.master_for_key(key);
        let id = |port: u16| self.cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        self.cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        self.cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        let to_port = to.to_string();
        loop {
            let listed = self.cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let answer = self.cli(from, &args);
            assert!(answer.contains("OK"), "MIGRATE failed: {answer}");
        }
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .into_keys()
                .filter(|p| *p != to && *p != from),
        );
        for port in order {
            self.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        let slot: u16 = slot.parse().expect("a slot number");
        self.wait_until("every server agrees on the moved slot", |c| {
            c.ports().iter().all(|&p| {
                c.cli(p, &["CLUSTER", "NODES"])
                    .lines()
                    .filter(|l| l.contains("master") && !l.contains("fail"))
                    .any(|l| {
                        l.starts_with(&to_id)
                            && l.split_whitespace().skip(8).any(|r| {
                                let (a, b) = r.split_once('-').unwrap_or((r, r));
                                matches!((a.parse::<u16>(), b.parse::<u16>()),
                                    (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                            })
                    })
            })
        });
    }

    /// The process id of the server on `port`, while the cluster runs it.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.servers.get(&port)?.as_ref().map(Child::id)
    }

    /// `kill -9` the master that owns `key`'s slot; returns its port.
    pub fn kill_master_for_key(&mut self, key: &str) -> u16 {
        let slot = self.keyslot(key);
        let port = self.master_of(slot).expect("some master owns the slot");
        if let Some(Some(mut child)) = self.servers.insert(port, None) {
            let _ = child.kill();
            let _ = child.wait();
        }
        port
    }

    /// Starts a killed server again on its port and data: it rejoins as a
    /// replica of whoever took over (see [`RedisCluster::whole`]).
    pub fn restart(&mut self, port: u16) {
        // Killed from outside (a load run's fault): reap it first.
        if let Some(Some(mut old)) = self.servers.remove(&port) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let child = self.launch(port);
        self.servers.insert(port, Some(child));
    }

    /// Every server runs, reports the cluster ok, and replicas are in sync.
    pub fn whole(&self) -> bool {
        self.servers.values().all(Option::is_some)
            && self.ports().iter().all(|&p| self.healthy(p))
            && self.masters().len() == 3
    }

    /// Waits until a replica took over `slot` from the killed `old` master
    /// and the cluster is ok again on every live server.
    pub fn wait_failover(&self, old: u16, slot: u16) {
        self.wait_until("a replica took over", |c| {
            c.master_of(slot).is_some_and(|p| p != old)
                && c.ports()
                    .iter()
                    .all(|&p| c.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
    }

    fn healthy(&self, port: u16) -> bool {
        if !self
            .cli(port, &["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
        {
            return false;
        }
        let replication = self.info(port, "replication");
        !replication.contains("role:slave") || replication.contains("master_link_status:up")
    }

    fn wait_until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "Redis Cluster: {what} did not happen in {FORM_TIMEOUT:?}:\n{}",
                self.ports()
                    .first()
                    .map(|&p| self.cli(p, &["CLUSTER", "NODES"]))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.servers.values_mut() {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `127.0.0.1:7001@17001,hostname` → 7001.
fn node_port(address: &str) -> Option<u16> {
    let host_port = address.split(['@', ',']).next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// `n` distinct free ports below [`HIGHEST_PORT`] whose cluster-bus port is
/// free as well. The listeners are held until all are picked so the kernel
/// does not hand one out twice.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        assert!(
            attempts < 10_000,
            "no free cluster ports below {HIGHEST_PORT}"
        );
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port > HIGHEST_PORT {
            held.push(listener);
            continue;
        }
        let Ok(bus) = TcpListener::bind(("127.0.0.1", port + 10_000)) else {
            held.push(listener);
            continue;
        };
        held.push(listener);
        held.push(bus);
        ports.push(port);
    }
    drop(held);
    ports
}
