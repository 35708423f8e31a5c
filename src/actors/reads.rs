//! Read models built from the backplane: what `GET` endpoints answer and
//! what every stream's `snapshot` carries. Both go through the same
//! functions, and customers' through the visibility gate.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::json;

use super::{Failure, Node};
use crate::domain::session::Target;
use crate::domain::visibility::{
    AgentSessionView, ClientEvent, OfferView, Viewer, agent_session_view, customer_session_view,
    message_view, offer_view,
};
use crate::domain::{AccountId, AgentId, Portal, PortalId, SessionId};

/// A portal by id and name.
#[derive(Debug, Clone, Serialize)]
pub struct PortalRef {
    /// The portal's id.
    pub id: PortalId,
    /// Its name.
    pub name: String,
}

/// The calling agent, as `GET /v1/me` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MeView {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// The portal it is logged into, if any.
    pub portal: Option<PortalRef>,
    /// Portals it may log into.
    pub portals: Vec<PortalId>,
    /// Sessions it is active in.
    pub active_sessions: usize,
}

/// One row of the collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct CollaboratorView {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// The portal it is logged into.
    pub portal: PortalRef,
    /// Sessions it is active in.
    pub active_sessions: usize,
}

/// A portal in the collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct PortalOnlineView {
    /// The portal's id.
    pub id: PortalId,
    /// Its name.
    pub name: String,
    /// Agents logged into it now (the caller included).
    pub agents_online: usize,
}

/// The collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct CollaboratorsView {
    /// Agents logged in now, except the caller.
    pub agents: Vec<CollaboratorView>,
    /// The account's portals with how many agents are online in each.
    pub portals: Vec<PortalOnlineView>,
}

async fn portal_ref(node: &Node, account: &AccountId, id: &PortalId) -> Result<PortalRef, Failure> {
    let name = node
        .backplane
        .portal(account, id)
        .await?
        .map_or_else(|| id.to_string(), |p| p.name);
    Ok(PortalRef {
        id: id.clone(),
        name,
    })
}

/// `GET /v1/me`.
pub async fn me(node: &Node, account: &AccountId, agent: &AgentId) -> Result<MeView, Failure> {
    let profile = node
        .backplane
        .agent(account, agent)
        .await?
        .ok_or(Failure::NotFound("agent"))?;
    let portal = match node.backplane.presence(account, agent).await? {
        Some(p) => Some(portal_ref(node, account, &p).await?),
        None => None,
    };
    let active_sessions = node.backplane.agent_sessions(account, agent).await?.len();
    Ok(MeView {
        id: profile.id,
        name: profile.name,
        portal,
        portals: profile.portals,
        active_sessions,
    })
}

/// Open invitations offered to `agent`, as its alerts show them: those sent
/// to it directly or to a portal it may log into, in which it is still a
/// live recipient.
pub async fn offers(
    node: &Node,
    account: &AccountId,
    agent: &AgentId,
) -> Result<Vec<OfferView>, Failure> {
    let profile = node
        .backplane
        .agent(account, agent)
        .await?
        .ok_or(Failure::NotFound("agent"))?;
    let targets = std::iter::once(Target::Agent(agent.clone()))
        .chain(profile.portals.iter().cloned().map(Target::Portal));
    let mut by_session: BTreeMap<SessionId, Vec<_>> = BTreeMap::new();
    for target in targets {
        for (inv, session) in node.backplane.open_invitations(account, &target).await? {
            by_session.entry(session).or_default().push(inv);
        }
    }
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for (session, invitations) in by_session {
        let Some(current) = node.backplane.load(account, &session).await? else {
            continue;
        };
        for inv in invitations {
            // An invitation past its time is over even if its timer has not
            // been handled yet.
            if let Some(i) = current.session.invitation(&inv)
                && i.is_pending()
                && i.expires_at > now
                && i.is_live_recipient(agent)
            {
                out.push(offer_view(&current.session, i));
            }
        }
    }
    out.sort_by_key(|o| o.invitation.created_at);
    Ok(out)
}

/// The active sessions `agent` is in, as their agents see them.
pub async fn sessions(
    node: &Node,
    account: &AccountId,
    agent: &AgentId,
) -> Result<Vec<AgentSessionView>, Failure> {
    let mut out = Vec::new();
    for id in node.backplane.agent_sessions(account, agent).await? {
        if let Some(current) = node.backplane.load(account, &id).await? {
            out.push(agent_session_view(&current.session));
        }
    }
    Ok(out)
}

/// The first event of an agent's stream.
pub async fn agent_snapshot(
    node: &Node,
    account: &AccountId,
    agent: &AgentId,
) -> Result<ClientEvent, Failure> {
    let me = me(node, account, agent).await?;
    let invitations = offers(node, account, agent).await?;
    let sessions = sessions(node, account, agent).await?;
    Ok(ClientEvent {
        name: "snapshot",
        data: json!({"agent": me, "invitations": invitations, "sessions": sessions}),
    })
}

/// The customer's view of a session and its visible chat.
pub async fn customer_session(
    node: &Node,
    account: &AccountId,
    id: &SessionId,
) -> Result<(serde_json::Value, Vec<serde_json::Value>), Failure> {
    let current = node
        .backplane
        .load(account, id)
        .await?
        .ok_or(Failure::NotFound("session"))?;
    let messages = node
        .backplane
        .messages(account, id)
        .await?
        .iter()
        .filter_map(|m| message_view(&Viewer::Customer, m))
        .collect();
    let view = serde_json::to_value(customer_session_view(&current.session)).unwrap_or_default();
    Ok((view, messages))
}

/// The first event of a customer's stream.
pub async fn customer_snapshot(
    node: &Node,
    account: &AccountId,
    id: &SessionId,
) -> Result<ClientEvent, Failure> {
    let (session, messages) = customer_session(node, account, id).await?;
    Ok(ClientEvent {
        name: "snapshot",
        data: json!({"session": session, "messages": messages}),
    })
}

/// The collaboration window for `caller`, filtered by `q` (case-insensitive,
/// on agent name, agent id or portal name).
pub async fn collaborators(
    node: &Node,
    account: &AccountId,
    caller: &AgentId,
    q: Option<&str>,
) -> Result<CollaboratorsView, Failure> {
    let portals: HashMap<PortalId, Portal> = node
        .backplane
        .portals(account)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let online = node.backplane.online(account).await?;
    let needle = q
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let matches = |text: &str| {
        needle
            .as_ref()
            .is_none_or(|n| text.to_lowercase().contains(n.as_str()))
    };

    let mut counts: HashMap<&PortalId, usize> = HashMap::new();
    for o in &online {
        *counts.entry(&o.portal).or_default() += 1;
    }
    let mut agents = Vec::new();
    for o in online.iter().filter(|o| &o.agent != caller) {
        let Some(profile) = node.backplane.agent(account, &o.agent).await? else {
            continue;
        };
        let portal_name = portals
            .get(&o.portal)
            .map_or_else(|| o.portal.to_string(), |p| p.name.clone());
        if !(matches(&profile.name) || matches(profile.id.as_str()) || matches(&portal_name)) {
            continue;
        }
        let active_sessions = node
            .backplane
            .agent_sessions(account, &o.agent)
            .await?
            .len();
        agents.push(CollaboratorView {
            id: profile.id,
            name: profile.name,
            portal: PortalRef {
                id: o.portal.clone(),
                name: portal_name,
            },
            active_sessions,
        });
    }
    agents.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    let mut portal_rows: Vec<PortalOnlineView> = portals
        .values()
        .filter(|p| {
            matches(&p.name) || matches(p.id.as_str()) || agents.iter().any(|a| a.portal.id == p.id)
        })
        .map(|p| PortalOnlineView {
            id: p.id.clone(),
            name: p.name.clone(),
            agents_online: counts.get(&p.id).copied().unwrap_or(0),
        })
        .collect();
    portal_rows.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    Ok(CollaboratorsView {
        agents,
        portals: portal_rows,
    })
}
