//! One node per test on a free port, or a handle on a node another process
//! runs (cluster tests).

use std::time::Duration;

use collabd::settings::Settings;
use collabd::startup::{Application, ShutdownHandle};

/// One node on a free port, running on the test's actix system. Cheap to
/// clone (a port and a shared client), so handles can hold their own.
#[derive(Clone)]
pub struct TestApp {
    /// The port it listens on.
    pub port: u16,
    /// A client for ordinary request/response calls.
    pub client: awc::Client,
    /// Set when the node runs in this test's process.
    handle: Option<ShutdownHandle>,
}

impl TestApp {
    /// A node with the test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A node with the test settings, adjusted by `tweak` before it is built.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = collabd_test_support::settings();
        tweak(&mut settings);
        let app = Application::build(settings)
            .await
            .unwrap_or_else(|e| panic!("the application does not build: {e}"));
        let port = app.port();
        let handle = app.handle();
        actix_rt::spawn(app.run_until_stopped());
        Self {
            port,
            client: request_client(),
            handle: Some(handle),
        }
    }

    /// A node running in another process on `port` (cluster tests), started
    /// with the same admin token.
    pub fn remote(port: u16) -> Self {
        Self {
            port,
            client: request_client(),
            handle: None,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A handle to stop the node gracefully.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle
            .clone()
            .unwrap_or_else(|| panic!("the node does not run in this process"))
    }
}

/// The client for plain requests. It reuses a connection for 2 s at most:
/// a node closes an idle keep-alive connection after 5 s (actix-web's
/// default), and a request sent on one it just closed would fail with
/// "connector has been disconnected" instead of reaching the node.
fn request_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().conn_keep_alive(Duration::from_secs(2)))
        .timeout(Duration::from_secs(30))
        .finish()
}
