//! Read models built from the backplane: what `GET` endpoints answer and
//! what every agent stream's `snapshot` carries. Both go through the same
//! functions; what a customer reads goes through the visibility gate in the
//! session actor.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde_json::json;

use super::{Failure, Node};
use crate::domain::session::Target;
use crate::domain::visibility::{
    AgentSessionView, ClientEvent, OfferView, agent_session_view, offer_view,
};
use crate::domain::{AccountId, Agent, AgentId, DisplayName, PortalId, SessionId};

/// The collaboration window's default page size.
pub const WINDOW_PAGE: usize = 200;
/// The collaboration window's largest page.
pub const WINDOW_PAGE_MAX: usize = 1000;

/// A portal by id and name.
#[derive(Debug, Clone, Serialize)]
pub struct PortalRef {
    /// The portal's id.
    pub id: PortalId,
    /// Its name.
    pub name: DisplayName,
}

/// The calling agent, as `GET /v1/me` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MeView {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: DisplayName,
    /// The portal it is logged into, if any.
    pub portal: Option<PortalRef>,
    /// Portals it may log into.
    pub portals: Vec<PortalId>,
    /// The same portals with their names (what a login picker shows), in
    /// the order of `portals`; a portal deleted meanwhile is left out.
    pub memberships: Vec<PortalRef>,
    /// Sessions it is active in.
    pub active_sessions: usize,
}

/// One row of the collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct CollaboratorView {
    /// The agent's id.
    pub id: AgentId,
    /// Display name.
    pub name: DisplayName,
    /// The portal it is logged into.
    pub portal: PortalRef,
    /// Sessions it is active in.
    pub active_sessions: u32,
}

/// A portal in the collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct PortalOnlineView {
    /// The portal's id.
    pub id: PortalId,
    /// Its name.
    pub name: DisplayName,
    /// Agents logged into it now (the caller included).
    pub agents_online: usize,
}

/// One page of the collaboration window.
#[derive(Debug, Clone, Serialize)]
pub struct CollaboratorsView {
    /// Agents logged in now, except the caller, by name.
    pub agents: Vec<CollaboratorView>,
    /// The account's portals with how many agents are online in each.
    pub portals: Vec<PortalOnlineView>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/me`.
pub async fn me(node: &Node, account: &AccountId, agent: &Agent) -> Result<MeView, Failure> {
    let presence = node.backplane.presence(account, &agent.id).await?;
    // One read of the account's portals names both the one it is in and
    // the ones it may log into.
    let names: HashMap<PortalId, DisplayName> = node
        .backplane
        .portals(account)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let portal = presence.map(|p| PortalRef {
        name: names
            .get(&p)
            .cloned()
            .unwrap_or_else(|| DisplayName::of_id(p.as_str())),
        id: p,
    });
    let memberships = agent
        .portals
        .iter()
        .filter_map(|p| {
            names.get(p).map(|name| PortalRef {
                id: p.clone(),
                name: name.clone(),
            })
        })
        .collect();
    let active_sessions = node
        .backplane
        .agent_sessions(account, &agent.id)
        .await?
        .len();
    Ok(MeView {
        id: agent.id.clone(),
        name: agent.name.clone(),
        portal,
        portals: agent.portals.clone(),
        memberships,
        active_sessions,
    })
}

/// Open invitations offered to `agent`, as its alerts show them: those sent
/// to it directly or to a portal it may log into, in which it is still a
/// live recipient.
pub async fn offers(
    node: &Node,
    account: &AccountId,
    agent: &Agent,
) -> Result<Vec<OfferView>, Failure> {
    let targets = std::iter::once(Target::Agent(agent.id.clone()))
        .chain(agent.portals.iter().cloned().map(Target::Portal));
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
                && i.expires_at > now
                && i.is_live_recipient(&agent.id)
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
    let profile = node
        .backplane
        .agent(account, agent)
        .await?
        .ok_or(Failure::NotFound("agent"))?;
    let me = me(node, account, &profile).await?;
    let invitations = offers(node, account, &profile).await?;
    let sessions = sessions(node, account, agent).await?;
    Ok(ClientEvent {
        name: "snapshot",
        data: json!({"agent": me, "invitations": invitations, "sessions": sessions}),
    })
}

/// Where a window page starts: after this (name, id).
fn encode_cursor(name: &str, id: &AgentId) -> String {
    B64.encode(format!("{name}\n{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(String, String)> {
    let text = String::from_utf8(B64.decode(cursor).ok()?).ok()?;
    let (name, id) = text.split_once('\n')?;
    Some((name.to_owned(), id.to_owned()))
}

/// A page of the collaboration window for `caller`: agents online now
/// except the caller, by name, filtered by `q` (case-insensitive, on agent
/// name, agent id or portal name). One backplane round trip whatever the
/// number of agents online.
pub async fn collaborators(
    node: &Node,
    account: &AccountId,
    caller: &AgentId,
    q: Option<&str>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<CollaboratorsView, Failure> {
    let limit = limit.max(1);
    let after = match cursor {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            Failure::Domain(crate::domain::DomainError::Invalid(
                "cursor is not one this server gave".into(),
            ))
        })?),
        None => None,
    };
    let window = node.backplane.window(account).await?;
    let portal_names: HashMap<&PortalId, &DisplayName> =
        window.portals.iter().map(|p| (&p.id, &p.name)).collect();
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
    for a in &window.agents {
        *counts.entry(&a.portal).or_default() += 1;
    }
    let mut rows: Vec<(String, CollaboratorView)> = window
        .agents
        .iter()
        .filter(|a| &a.agent.id != caller)
        .filter_map(|a| {
            let portal_name = portal_names
                .get(&a.portal)
                .map_or_else(|| DisplayName::of_id(a.portal.as_str()), |n| (*n).clone());
            let shown =
                matches(&a.agent.name) || matches(a.agent.id.as_str()) || matches(&portal_name);
            shown.then(|| {
                (
                    a.agent.name.to_lowercase(),
                    CollaboratorView {
                        id: a.agent.id.clone(),
                        name: a.agent.name.clone(),
                        portal: PortalRef {
                            id: a.portal.clone(),
                            name: portal_name,
                        },
                        active_sessions: a.active_sessions,
                    },
                )
            })
        })
        .collect();
    rows.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.id.cmp(&y.id)));
    let mut portals: Vec<PortalOnlineView> = window
        .portals
        .iter()
        .filter(|p| {
            matches(&p.name)
                || matches(p.id.as_str())
                || rows.iter().any(|(_, a)| a.portal.id == p.id)
        })
        .map(|p| PortalOnlineView {
            id: p.id.clone(),
            name: p.name.clone(),
            agents_online: counts.get(&p.id).copied().unwrap_or(0),
        })
        .collect();
    portals.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    let start = match &after {
        Some((name, id)) => rows
            .iter()
            .position(|(n, a)| (n.as_str(), a.id.as_str()) > (name.as_str(), id.as_str()))
            .unwrap_or(rows.len()),
        None => 0,
    };
    let page: Vec<(String, CollaboratorView)> = rows.drain(start..).take(limit + 1).collect();
    let next_cursor = (page.len() > limit)
        .then(|| page.get(limit - 1).map(|(n, a)| encode_cursor(n, &a.id)))
        .flatten();
    Ok(CollaboratorsView {
        agents: page.into_iter().take(limit).map(|(_, a)| a).collect(),
        portals,
        next_cursor,
    })
}
