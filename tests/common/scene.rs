//! The set-up most tests repeat, declared instead of spelled out: account
//! `acme` with a policy and its portals `support` and `billing`, agents
//! (members of portals, most logged into one), and a web session a lead
//! created for the customer Carol.
//!
//! ```ignore
//! let scene = Scene::builder(&app)
//!     .policy(json!({"invitation_ttl_secs": 1}))
//!     .online("ann", "Ann", "support")
//!     .online("bob", "Bob", "support")
//!     .member("fred", "Fred", &["support"])
//!     .session("ann")
//!     .build()
//!     .await;
//! let [ann, bob, fred] = scene.agents();
//! let session = scene.session();
//!
//! // The commonest one: Ann leads, Bob and Cid are logged into support too.
//! let ([ann, bob, cid], session) =
//!     Scene::support_session(&app, json!({}), ["ann", "bob", "cid"]).await;
//! ```

use serde_json::{Value, json};

use super::{ACME, AgentHandle, SessionHandle, TestApp};

/// What [`Scene::builder`] builds, in this order: the account, the agents (in
/// the order added), the session.
#[must_use = "a scene is made by `build().await`"]
pub struct SceneBuilder {
    app: TestApp,
    policy: Value,
    /// Id, name, and where it is.
    agents: Vec<(String, String, Place)>,
    lead: Option<String>,
}

/// Where an agent of the scene is.
enum Place {
    /// Logged into this portal, its only one.
    Online(String),
    /// A member of these portals, not logged in.
    Member(Vec<String>),
}

/// A built scene: the agents as handles, and the session if one was asked
/// for.
pub struct Scene {
    agents: Vec<AgentHandle>,
    session: Option<SessionHandle>,
}

impl Scene {
    /// A scene on `app`: account `acme` with an empty policy, portals
    /// `support` ("Support Desk") and `billing` ("Billing"), as
    /// [`TestApp::acme`] makes them.
    pub fn builder(app: &TestApp) -> SceneBuilder {
        SceneBuilder {
            app: app.clone(),
            policy: json!({}),
            agents: Vec::new(),
            lead: None,
        }
    }

    /// The commonest scene, in one call: account `acme` with `policy`, each
    /// of `agents` logged into `support` and named after its id (`ann` is
    /// "Ann"), and a web session for Carol that the first of them leads.
    pub async fn support_session<const N: usize>(
        app: &TestApp,
        policy: Value,
        agents: [&str; N],
    ) -> ([AgentHandle; N], SessionHandle) {
        let lead = *agents
            .first()
            .unwrap_or_else(|| panic!("a session needs a lead: name one agent at least"));
        let mut builder = Scene::builder(app).policy(policy);
        for id in agents {
            builder = builder.online(id, &capitalised(id), "support");
        }
        let scene = builder.session(lead).build().await;
        (scene.agents(), scene.session())
    }

    /// Every agent of the scene, in the order added (asserts there are `N`).
    #[track_caller]
    pub fn agents<const N: usize>(&self) -> [AgentHandle; N] {
        match <[AgentHandle; N]>::try_from(self.agents.clone()) {
            Ok(agents) => agents,
            Err(agents) => panic!(
                "the scene has {} agents, not {N}: {:?}",
                agents.len(),
                agents.iter().map(|a| &a.id).collect::<Vec<_>>()
            ),
        }
    }

    /// The session (asserts the scene has one).
    #[track_caller]
    pub fn session(&self) -> SessionHandle {
        self.session
            .clone()
            .unwrap_or_else(|| panic!("the scene has no session: add `.session(lead)`"))
    }
}

impl SceneBuilder {
    /// The account's policy.
    pub fn policy(mut self, policy: Value) -> Self {
        self.policy = policy;
        self
    }

    /// An agent who is a member of `portal` and logged in there.
    pub fn online(mut self, id: &str, name: &str, portal: &str) -> Self {
        let place = Place::Online(portal.to_owned());
        self.agents.push((id.to_owned(), name.to_owned(), place));
        self
    }

    /// An agent who is a member of `portals` and not logged in.
    pub fn member(mut self, id: &str, name: &str, portals: &[&str]) -> Self {
        let place = Place::Member(portals.iter().map(|p| (*p).to_owned()).collect());
        self.agents.push((id.to_owned(), name.to_owned(), place));
        self
    }

    /// A web session for the customer Carol, created by `lead` (an agent
    /// of the scene) once every agent is in place.
    pub fn session(mut self, lead: &str) -> Self {
        self.lead = Some(lead.to_owned());
        self
    }

    /// Provisions everything on the node (asserting every step).
    pub async fn build(self) -> Scene {
        let app = self.app;
        app.acme(self.policy).await;
        let mut agents = Vec::new();
        for (id, name, place) in &self.agents {
            agents.push(match place {
                Place::Online(portal) => app.online(ACME, id, name, portal).await,
                Place::Member(portals) => {
                    let portals: Vec<&str> = portals.iter().map(String::as_str).collect();
                    app.agent(ACME, id, name, &portals).await
                }
            });
        }
        let session = match &self.lead {
            None => None,
            Some(lead) => {
                let lead = agents
                    .iter()
                    .find(|a| &a.id == lead)
                    .unwrap_or_else(|| panic!("the lead {lead} is not an agent of the scene"));
                Some(lead.create_session("web", "Carol").await)
            }
        };
        Scene { agents, session }
    }
}

/// `ann` -> `Ann`.
fn capitalised(id: &str) -> String {
    let mut chars = id.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
