//! Handles a test acts through: an agent (who it is and its token) and a
//! session (its id and the customer's token). Each holds its own clone of a
//! [`TestApp`], so handles can be kept, cloned and moved into futures; `on`
//! binds the same identity to another node (cluster tests use
//! [`TestApp::remote`]). The calls are [`TestApp`]'s typed calls (`api.rs`),
//! with the token filled in.

use std::fmt;
use std::panic::Location;

use serde_json::{Value, json};

use super::{EventStream, Reply, TestApp, id_of};

/// An agent with a minted token, acting on one node; what
/// [`TestApp::agent`] and [`TestApp::online`] return.
#[derive(Clone)]
pub struct AgentHandle {
    pub id: String,
    pub name: String,
    pub token: String,
    app: TestApp,
}

/// The name agents had before they were handles.
pub type AgentLogin = AgentHandle;

impl fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentHandle")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("port", &self.app.port)
            .finish_non_exhaustive()
    }
}

/// A session and its customer's token; the customer's calls go to one node.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: String,
    /// The customer's bearer token.
    pub customer: String,
    /// The agent view `POST /v1/sessions` answered with.
    pub view: Value,
    app: TestApp,
}

impl AgentHandle {
    pub(super) fn new(app: &TestApp, id: &str, name: &str, token: String) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            token,
            app: app.clone(),
        }
    }

    /// The same agent (same token) acting on another node.
    pub fn on(&self, app: &TestApp) -> Self {
        Self {
            app: app.clone(),
            ..self.clone()
        }
    }

    /// `POST /v1/me/login`.
    pub async fn login(&self, portal: &str) -> Reply {
        self.app.login(&self.token, portal).await
    }

    /// `POST /v1/me/logout`.
    pub async fn logout(&self) -> Reply {
        self.app.logout(&self.token).await
    }

    /// `GET /v1/me`.
    pub async fn me(&self) -> Reply {
        self.app.me(&self.token).await
    }

    /// `active_sessions` of `GET /v1/me` (asserts 200).
    #[track_caller]
    pub fn active_sessions(&self) -> impl Future<Output = Value> + '_ {
        let caller = Location::caller();
        async move { self.me().await.expect_status_at(200, caller)["active_sessions"].clone() }
    }

    /// Opens `GET /v1/me/events`: the stream, past its `snapshot`, and the snapshot.
    pub async fn events(&self) -> (EventStream, Value) {
        self.app.agent_events(&self.token).await
    }

    /// `GET /v1/me/invitations` (asserts 200): the offers.
    pub async fn my_invitations(&self) -> Vec<Value> {
        self.app.my_invitations(&self.token).await
    }

    /// `POST /v1/sessions` for a customer named `customer` (asserts 201).
    pub async fn create_session(&self, mode: &str, customer: &str) -> SessionHandle {
        let (created, customer) = self.app.create_session(&self.token, mode, customer).await;
        SessionHandle {
            id: id_of(&created),
            customer,
            view: created,
            app: self.app.clone(),
        }
    }

    /// `POST /v1/sessions/{session}/invitations`.
    pub async fn invite(&self, session: &str, body: Value) -> Reply {
        self.app.invite(&self.token, session, body).await
    }

    /// `POST /v1/sessions/{session}/invitations` of kind `transfer`: `target`
    /// (an object such as `{"target": {"agent": "bob"}}`) with `"kind":
    /// "transfer"` added.
    pub async fn transfer(&self, session: &str, target: Value) -> Reply {
        let mut body = json!({"kind": "transfer"});
        if let (Some(body), Value::Object(target)) = (body.as_object_mut(), target) {
            body.extend(target);
        }
        self.invite(session, body).await
    }

    /// `DELETE /v1/sessions/{session}/invitations/{inv}`.
    pub async fn cancel(&self, session: &str, inv: &str) -> Reply {
        self.app.cancel(&self.token, session, inv).await
    }

    /// `POST /v1/invitations/{inv}/accept`.
    pub async fn accept(&self, inv: &str) -> Reply {
        self.app.accept(&self.token, inv).await
    }

    /// `POST /v1/invitations/{inv}/decline`.
    pub async fn decline(&self, inv: &str) -> Reply {
        self.app.decline(&self.token, inv).await
    }

    /// Invites `joiner` directly and has it accept: returns the invitation id.
    #[track_caller]
    pub fn bring_in<'a>(
        &'a self,
        session: &'a str,
        joiner: &'a AgentHandle,
        masked: bool,
    ) -> impl Future<Output = String> + 'a {
        self.bring_in_at(session, joiner, masked, Location::caller())
    }

    /// [`AgentHandle::bring_in`], failing at `caller`.
    pub(super) async fn bring_in_at(
        &self,
        session: &str,
        joiner: &AgentHandle,
        masked: bool,
        caller: &Location<'_>,
    ) -> String {
        let body = json!({"target": {"agent": joiner.id}, "masked": masked});
        let invitation = self
            .invite(session, body)
            .await
            .expect_status_at(201, caller);
        let id = id_of(&invitation);
        joiner.accept(&id).await.expect_status_at(200, caller);
        id
    }

    /// `GET /v1/sessions/{session}`: the agent view.
    pub async fn view(&self, session: &str) -> Reply {
        self.app.session(&self.token, session).await
    }

    /// `GET /v1/sessions/{session}/messages`.
    pub async fn messages(&self, session: &str) -> Reply {
        self.app.messages(&self.token, session).await
    }

    /// `POST /v1/sessions/{session}/messages`.
    pub async fn say(&self, session: &str, text: &str, audience: &str) -> Reply {
        self.app.say(&self.token, session, text, audience).await
    }

    /// `POST /v1/sessions/{session}/leave`.
    pub async fn leave(&self, session: &str) -> Reply {
        self.app.leave(&self.token, session).await
    }

    /// `POST /v1/sessions/{session}/end`.
    pub async fn end(&self, session: &str) -> Reply {
        self.app.end(&self.token, session).await
    }

    /// `POST /v1/sessions/{session}/participants/{agent}/mask`.
    pub async fn mask(&self, session: &str, agent: &str) -> Reply {
        let path = format!("/v1/sessions/{session}/participants/{agent}/mask");
        self.app.post_empty(&path, &self.token).await
    }

    /// `POST /v1/sessions/{session}/participants/{agent}/unmask`.
    pub async fn unmask(&self, session: &str, agent: &str) -> Reply {
        let path = format!("/v1/sessions/{session}/participants/{agent}/unmask");
        self.app.post_empty(&path, &self.token).await
    }

    /// `GET /v1/sessions/{session}/audit`.
    pub async fn audit(&self, session: &str) -> Reply {
        self.app
            .get(&format!("/v1/sessions/{session}/audit"), &self.token)
            .await
    }
}

impl SessionHandle {
    /// The same session, its customer calling another node.
    pub fn on(&self, app: &TestApp) -> Self {
        Self {
            app: app.clone(),
            ..self.clone()
        }
    }

    /// The customer's `generation` when the session was created.
    #[track_caller]
    pub fn generation(&self) -> u64 {
        self.view["customer"]["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no customer generation in {}", self.view))
    }

    /// `GET /v1/customer/session`.
    pub async fn customer_session(&self) -> Reply {
        self.app.customer_session(&self.customer).await
    }

    /// Opens `GET /v1/customer/events`: the stream, past its `snapshot`, and the snapshot.
    pub async fn customer_events(&self) -> (EventStream, Value) {
        self.app.customer_events(&self.customer).await
    }

    /// `GET /v1/customer/messages`.
    pub async fn customer_messages(&self) -> Reply {
        self.app.customer_messages(&self.customer).await
    }

    /// `POST /v1/customer/messages`.
    pub async fn customer_say(&self, text: &str) -> Reply {
        self.app.customer_say(&self.customer, text).await
    }

    /// `POST /v1/customer/reconnected`.
    pub async fn reconnected(&self, generation: u64, screen_shared: bool) -> Reply {
        self.app
            .reconnected(&self.customer, generation, screen_shared)
            .await
    }
}
