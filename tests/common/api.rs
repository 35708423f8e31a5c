//! Typed calls for the HTTP contract (API.md): provisioning, the agent's own
//! calls, sessions, invitations, chat and the customer's calls.

use std::panic::Location;

use serde_json::{Value, json};

use super::{ACME, ADMIN, AgentHandle, Reply, TestApp};

impl TestApp {
    /// How many sessions the admin sees in `account` (up to 100).
    pub async fn session_count(&self, account: &str) -> usize {
        let page = self
            .get(&format!("/v1/accounts/{account}/sessions?limit=100"), ADMIN)
            .await
            .expect_status(200);
        page["sessions"].as_array().map_or(0, Vec::len)
    }

    // ---- provisioning (admin) ----------------------------------------------

    /// `PUT /v1/accounts/{id}` with this policy.
    pub async fn put_account(&self, id: &str, policy: Value) -> Reply {
        let body = json!({"name": format!("Account {id}"), "policy": policy});
        self.put(&format!("/v1/accounts/{id}"), ADMIN, body).await
    }

    /// `PUT /v1/accounts/{account}/portals/{id}`.
    pub async fn put_portal(&self, account: &str, id: &str, name: &str) -> Reply {
        let path = format!("/v1/accounts/{account}/portals/{id}");
        self.put(&path, ADMIN, json!({"name": name})).await
    }

    /// `PUT /v1/accounts/{account}/agents/{id}`.
    pub async fn put_agent(&self, account: &str, id: &str, name: &str, portals: &[&str]) -> Reply {
        let path = format!("/v1/accounts/{account}/agents/{id}");
        self.put(&path, ADMIN, json!({"name": name, "portals": portals}))
            .await
    }

    /// `POST /v1/accounts/{account}/agents/{agent}/tokens`.
    pub async fn mint_token(&self, account: &str, agent: &str, body: Value) -> Reply {
        let path = format!("/v1/accounts/{account}/agents/{agent}/tokens");
        self.post(&path, ADMIN, body).await
    }

    /// A fresh agent token (asserts 201).
    pub async fn token(&self, account: &str, agent: &str) -> String {
        let minted = self
            .mint_token(account, agent, json!({}))
            .await
            .expect_status(201);
        minted["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {minted}"))
            .to_owned()
    }

    /// Creates an account with this policy (asserts 201).
    pub async fn account(&self, id: &str, policy: Value) {
        self.put_account(id, policy).await.expect_status(201);
    }

    /// Creates a portal (asserts 201).
    pub async fn portal(&self, account: &str, id: &str, name: &str) {
        self.put_portal(account, id, name).await.expect_status(201);
    }

    /// Account `acme` with this policy and the portals `support` ("Support
    /// Desk") and `billing` ("Billing").
    pub async fn acme(&self, policy: Value) {
        self.account(ACME, policy).await;
        self.portal(ACME, "support", "Support Desk").await;
        self.portal(ACME, "billing", "Billing").await;
    }

    /// Creates an agent (asserts 201) and mints its token.
    pub async fn agent(
        &self,
        account: &str,
        id: &str,
        name: &str,
        portals: &[&str],
    ) -> AgentHandle {
        self.put_agent(account, id, name, portals)
            .await
            .expect_status(201);
        AgentHandle::new(self, id, name, self.token(account, id).await)
    }

    /// Creates an agent that is a member of `portal` and logs it in there.
    pub async fn online(&self, account: &str, id: &str, name: &str, portal: &str) -> AgentHandle {
        let agent = self.agent(account, id, name, &[portal]).await;
        agent.login(portal).await.expect_status(200);
        agent
    }

    // ---- the agent's own calls ---------------------------------------------

    /// `POST /v1/me/login`.
    pub async fn login(&self, token: &str, portal: &str) -> Reply {
        self.post("/v1/me/login", token, json!({"portal": portal}))
            .await
    }

    /// `POST /v1/me/logout`.
    pub async fn logout(&self, token: &str) -> Reply {
        self.post_empty("/v1/me/logout", token).await
    }

    /// `GET /v1/me`.
    pub async fn me(&self, token: &str) -> Reply {
        self.get("/v1/me", token).await
    }

    /// `GET /v1/me/invitations` (asserts 200): the offers.
    pub async fn my_invitations(&self, token: &str) -> Vec<Value> {
        let body = self
            .get("/v1/me/invitations", token)
            .await
            .expect_status(200);
        body["invitations"]
            .as_array()
            .unwrap_or_else(|| panic!("no invitations array in {body}"))
            .clone()
    }

    /// `GET /v1/collaborators`, with `q` if given.
    pub async fn collaborators(&self, token: &str, q: Option<&str>) -> Reply {
        let path = match q {
            Some(q) => format!("/v1/collaborators?q={}", encode_query(q)),
            None => "/v1/collaborators".to_owned(),
        };
        self.get(&path, token).await
    }

    // ---- sessions ------------------------------------------------------------

    /// `POST /v1/sessions` (asserts 201): the agent view and the customer token.
    pub async fn create_session(&self, token: &str, mode: &str, customer: &str) -> (Value, String) {
        let body = self
            .post(
                "/v1/sessions",
                token,
                json!({"mode": mode, "customer": {"name": customer}}),
            )
            .await
            .expect_status(201);
        let customer_token = body["customer_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no customer_token in {body}"))
            .to_owned();
        (body["session"].clone(), customer_token)
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, token: &str, id: &str) -> Reply {
        self.get(&format!("/v1/sessions/{id}"), token).await
    }

    /// `POST /v1/sessions/{session}/invitations`.
    pub async fn invite(&self, token: &str, session: &str, body: Value) -> Reply {
        self.post(&format!("/v1/sessions/{session}/invitations"), token, body)
            .await
    }

    /// `DELETE /v1/sessions/{session}/invitations/{inv}`.
    pub async fn cancel(&self, token: &str, session: &str, inv: &str) -> Reply {
        self.delete(&format!("/v1/sessions/{session}/invitations/{inv}"), token)
            .await
    }

    /// `POST /v1/invitations/{inv}/accept`.
    pub async fn accept(&self, token: &str, inv: &str) -> Reply {
        self.post_empty(&format!("/v1/invitations/{inv}/accept"), token)
            .await
    }

    /// `POST /v1/invitations/{inv}/decline`.
    pub async fn decline(&self, token: &str, inv: &str) -> Reply {
        self.post_empty(&format!("/v1/invitations/{inv}/decline"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/messages`.
    pub async fn say(&self, token: &str, session: &str, text: &str, audience: &str) -> Reply {
        let body = json!({"text": text, "audience": audience});
        self.post(&format!("/v1/sessions/{session}/messages"), token, body)
            .await
    }

    /// `GET /v1/sessions/{session}/messages`.
    pub async fn messages(&self, token: &str, session: &str) -> Reply {
        self.get(&format!("/v1/sessions/{session}/messages"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/leave`.
    pub async fn leave(&self, token: &str, session: &str) -> Reply {
        self.post_empty(&format!("/v1/sessions/{session}/leave"), token)
            .await
    }

    /// `POST /v1/sessions/{session}/end`.
    pub async fn end(&self, token: &str, session: &str) -> Reply {
        self.post_empty(&format!("/v1/sessions/{session}/end"), token)
            .await
    }

    /// Invites `joiner` directly and has it accept: returns the invitation
    /// id. Both act on this node.
    #[track_caller]
    pub fn bring_in<'a>(
        &'a self,
        inviter: &'a AgentHandle,
        session: &'a str,
        joiner: &'a AgentHandle,
        masked: bool,
    ) -> impl Future<Output = String> + 'a {
        let caller = Location::caller();
        async move {
            let (inviter, joiner) = (inviter.on(self), joiner.on(self));
            inviter.bring_in_at(session, &joiner, masked, caller).await
        }
    }

    // ---- the customer ----------------------------------------------------------

    /// `GET /v1/customer/session`.
    pub async fn customer_session(&self, token: &str) -> Reply {
        self.get("/v1/customer/session", token).await
    }

    /// `GET /v1/customer/messages`.
    pub async fn customer_messages(&self, token: &str) -> Reply {
        self.get("/v1/customer/messages", token).await
    }

    /// `POST /v1/customer/messages`.
    pub async fn customer_say(&self, token: &str, text: &str) -> Reply {
        self.post("/v1/customer/messages", token, json!({"text": text}))
            .await
    }

    /// `POST /v1/customer/reconnected`.
    pub async fn reconnected(&self, token: &str, generation: u64, screen_shared: bool) -> Reply {
        let body = json!({"generation": generation, "screen_shared": screen_shared});
        self.post("/v1/customer/reconnected", token, body).await
    }
}

/// Percent-encodes a query value.
fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
